-- 0003: credit_usage_attribution loses its foreign key to the allocation.
--
-- The key cost every deduction a second query (the referential check) and a
-- share lock on the allocation row it had just updated: 23% of the spread
-- deduction rate in bench/ledger_bench.py (4,897 -> 6,008 per second at 64
-- clients, same server, same run). deduct_credits, the only writer, takes
-- allocation_id from the row it has just charged, and allocations are never
-- deleted; a row written around the function and naming no allocation is
-- still reported by `billing verify` (allocation_used_matches_attribution,
-- pool_used_matches_attribution).
alter table credit_usage_attribution
    drop constraint credit_usage_attribution_org_id_allocation_id_fkey;
