-- 0016: an index of the subscription rows of billing history.
--
-- What was true at a past moment (an organization's plan, price, status and
-- MRR then) is its latest subscription history row at or before that moment
-- (sql/routines/080_analytics.sql, org_included_credits). Those rows are few
-- among the purchases, grants and settlements of the same organization: this
-- partial index finds the latest one at a moment without reading the others.
create index org_billing_history_subscription_rows
    on org_billing_history (org_id, created_at desc, id desc)
 where metadata ? 'mrr_after';
