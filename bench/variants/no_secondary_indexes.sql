-- Pricing only: credit_usage_attribution without its time index (the reports
-- read usage through it): what the one remaining non-unique index costs.
drop index credit_usage_attribution_by_time;
