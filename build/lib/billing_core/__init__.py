"""billing_core: the organization billing domain, typed Python over the PostgreSQL ledger."""
