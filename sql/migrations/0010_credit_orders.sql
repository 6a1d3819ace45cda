-- 0010: credit orders. Money enters a pool only through a paid order (or a
-- system admin's grant with a reason, which is a 'credit_grant' history row,
-- not an order).
--
-- An order is what a customer (an org admin, or a user for their individual
-- balance) asks to buy at the catalogue's list price: a credit package (its
-- credits plus its bonus, at its price) or a number of credits (1 credit =
-- $0.001). It waits for payment; recording the payment (a system admin, the
-- operator, later the payment provider's signed event) puts its credits in
-- the pool through one 'credit_purchase' history row that names the order.
--   source:            'order' (created by create_credit_order), 'direct' (a
--                      trusted caller's add_credits_to_pool: entered paid),
--                      'migrated' (a purchase recorded before orders existed)
--   ordered_credits:   the package's credits or the number ordered
--   bonus_credits:     the package's bonus (0 without a package)
--   credits:           what reaches the pool: ordered + bonus
--   list_price:        the catalogue's price of what was ordered
--   price:             the amount due (and, once paid, paid): the list price
--                      for a customer's order; at most the list price for a
--                      trusted caller's direct entry (a negotiated discount)
--   payment_reference: the payment's id (an invoice, a bank transfer): one
--                      payment credits one order, across all organizations
--   paid_at:           when the payment happened (a trusted caller may date
--                      it in the past); payment_recorded_at: when it was
--                      recorded. *_by null: the operator.
create table credit_orders (
    org_id text not null references organizations (id),
    id text not null,
    source text not null default 'order',
    package_code text references credit_packages (code),
    ordered_credits numeric(20, 6) not null,
    bonus_credits numeric(20, 6) not null default 0,
    credits numeric(20, 6) not null,
    list_price numeric(16, 4) not null,
    price numeric(16, 4) not null,
    currency text not null default 'USD',
    description text not null,
    status text not null default 'awaiting_payment',
    credits_expire_at timestamptz,
    ordered_by text references users (id),
    ordered_at timestamptz not null default now(),
    payment_reference text,
    paid_at timestamptz,
    payment_recorded_by text references users (id),
    payment_recorded_at timestamptz,
    canceled_by text references users (id),
    canceled_at timestamptz,
    primary key (org_id, id),
    constraint credit_orders_id_unique unique (id),
    constraint credit_orders_id_format check (id ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    constraint credit_orders_source_known check (source in ('order', 'direct', 'migrated')),
    constraint credit_orders_status_known check (status in ('awaiting_payment', 'paid', 'canceled')),
    constraint credit_orders_credits_valid check (
        ordered_credits > 0 and ordered_credits <> 'NaN' and bonus_credits >= 0 and bonus_credits <> 'NaN'
        and credits = ordered_credits + bonus_credits and credits <= 1000000000000),
    constraint credit_orders_bonus_from_package check (package_code is not null or bonus_credits = 0),
    constraint credit_orders_price_valid check (
        price > 0 and price <> 'NaN' and list_price > 0 and list_price <> 'NaN'
        and (price <= list_price or source = 'migrated')),
    constraint credit_orders_customer_pays_list_price check (source <> 'order' or price = list_price),
    constraint credit_orders_currency_known check (currency = 'USD'),
    constraint credit_orders_description_format
        check (length(btrim(description)) between 1 and 500 and description !~ '[[:cntrl:]]'),
    constraint credit_orders_reference_format check (
        payment_reference is null
        or (length(btrim(payment_reference)) between 1 and 200 and payment_reference !~ '[[:cntrl:]]')),
    constraint credit_orders_paid_has_payment check (
        (status = 'paid') = (paid_at is not null and payment_recorded_at is not null)),
    constraint credit_orders_paid_order_has_reference check (
        status <> 'paid' or source <> 'order' or payment_reference is not null),
    constraint credit_orders_unpaid_has_no_reference check (status = 'paid' or payment_reference is null),
    constraint credit_orders_canceled_has_time check ((status = 'canceled') = (canceled_at is not null))
);

-- one payment credits one order, whichever organization it belongs to
create unique index credit_orders_payment_reference
    on credit_orders (payment_reference) where payment_reference is not null;

create index credit_orders_by_org on credit_orders (org_id, ordered_at);

create index credit_orders_awaiting_payment on credit_orders (ordered_at) where status = 'awaiting_payment';

-- the order a 'credit_purchase' history row paid for (one row per order)
alter table org_billing_history add column credit_order_id text;

alter table org_billing_history
    add constraint org_billing_history_credit_order
    foreign key (org_id, credit_order_id) references credit_orders (org_id, id);

create unique index org_billing_history_one_row_per_order
    on org_billing_history (org_id, credit_order_id) where credit_order_id is not null;

-- Purchases recorded before orders existed become paid orders (source
-- 'migrated'), so that revenue = paid orders holds for them too. A payment
-- reference used in several organizations stays on the first order only.
insert into credit_orders
    (org_id, id, source, ordered_credits, credits, list_price, price, description, status,
     credits_expire_at, ordered_by, ordered_at, payment_reference, paid_at, payment_recorded_by,
     payment_recorded_at)
select h.org_id, 'ord-migrated-' || h.id, 'migrated', h.credits, h.credits,
       greatest(ceil(h.credits * 10) / 10000, 0.0001), h.amount,
       left(coalesce(nullif(btrim(regexp_replace(h.description, '[[:cntrl:]]', ' ', 'g')), ''),
                     'Purchase recorded before orders'), 500),
       'paid', h.credits_expire_at, h.created_by, h.created_at,
       case when h.external_ref is not null and btrim(h.external_ref) <> '' and length(h.external_ref) <= 200
                 and h.external_ref !~ '[[:cntrl:]]'
                 and h.id = min(h.id) over (partition by h.external_ref)
            then h.external_ref end,
       h.created_at, h.created_by, h.recorded_at
  from org_billing_history h
 where h.event_type = 'credit_purchase' and h.credits > 0 and h.amount > 0;

update org_billing_history h
   set credit_order_id = 'ord-migrated-' || h.id
 where h.event_type = 'credit_purchase' and h.credits > 0 and h.amount > 0;

-- From when the ledger's doors are checked: `billing verify` checks that every
-- credit that entered a pool since then came from a paid order or a grant with
-- a reason (grants recorded before carried no reason; review them in the
-- audit log).
create table ledger_rules_since (
    rule text primary key,
    since timestamptz not null default now(),
    constraint ledger_rules_since_rule_format check (rule ~ '^[a-z][a-z0-9_]{0,63}$')
);

insert into ledger_rules_since (rule) values ('credits_enter_through_orders_or_grants');
