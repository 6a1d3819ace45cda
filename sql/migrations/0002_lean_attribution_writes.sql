-- 0002: fewer indexes on the ledger's hottest insert.
--
-- Every deduction inserts one credit_usage_attribution row; each index is
-- written on every insert. No query reads these two: per-allocation sums
-- (billing verify) scan the whole table anyway, and a member's usage is read
-- within an organization through credit_usage_attribution_by_time.
drop index credit_usage_attribution_by_user;

drop index credit_usage_attribution_by_allocation;
