-- Who may do what in this database. Runs last whenever routines are
-- re-applied (CREATE OR REPLACE FUNCTION resets SECURITY DEFINER, and a new
-- function starts with EXECUTE for PUBLIC), so everything below is stated
-- again each time.
--
-- Roles (created by `billing db migrate` or `billing db roles`, see
-- billing_core/roles.py):
--   owner            the login that runs the migrations: owns every object;
--                    on its own connection (no SET ROLE) it is the operator,
--                    the only caller a NULL actor is accepted from
--                    (ledger_is_operator in 010_checks.sql).
--   billing_app      the Streamlit app and `billing --as USER`: the owner's
--                    login after SET ROLE billing_app. EXECUTE on the
--                    functions billing_core calls, reads and writes alike
--                    (each checks its acting user itself); no table, view or
--                    sequence: no SELECT, INSERT, UPDATE or DELETE anywhere.
--   billing_service  metered services, through LOGIN roles that are members
--                    of it (`billing db service-login NAME`): EXECUTE on the
--                    charging functions only, no table, view or sequence.
--   PUBLIC           nothing.
--
-- Every function granted to the app or the service is SECURITY DEFINER (it
-- runs with the owner's rights, so callers need no table rights) with a
-- pinned search_path; the ledger_* helpers stay SECURITY INVOKER and are not
-- granted (only those functions call them).
--
-- To grant a new function: add its name to one list below (one per line);
-- every overload of the name is covered. A listed name that does not exist
-- fails the migration, so a rename cannot leave a grant behind silently.

revoke all on all tables in schema public from public;
revoke all on all sequences in schema public from public;
revoke all on all functions in schema public from public;
revoke all on all procedures in schema public from public;
revoke create on schema public from public;
alter default privileges revoke execute on functions from public;
grant usage on schema public to billing_app, billing_service;

-- Start from nothing for the two roles, so a right removed from a list below
-- is really taken away.
revoke all on all tables in schema public from billing_app, billing_service;
revoke all on all sequences in schema public from billing_app, billing_service;
revoke all on all functions in schema public from billing_app, billing_service;
revoke all on all procedures in schema public from billing_app, billing_service;


do $access$
declare
    -- metered services: the charging functions, and nothing else
    v_service_functions text[] := array[
        'has_sufficient_credits',
        'deduct_credits',
        'charge_usage',
        'reserve_credits',
        'settle_hold',
        'settle_usage',
        'release_hold',
        'price_usage',
        'charge_credits',
        'charge_usage_batch'
    ];
    -- the app (screens, `billing --as USER`): every function billing_core calls
    -- on its behalf; each one checks its acting user (a NULL actor is refused
    -- on the app's connection), except the login's own steps and the public
    -- catalogues (list price, plans), which read nothing of an organization's
    v_app_functions text[] := array[
        -- logins and sessions
        'app_setting',
        'start_user_session',
        'check_user_session',
        'resume_user_session',
        'end_user_session',
        'change_user_password',
        'begin_login_attempt',
        'login_entry',
        'user_id_for_email',
        'user_account',
        'user_memberships',
        -- organizations and members
        'create_organization',
        'create_organization_with_plan',
        'create_user',
        'add_organization_member',
        'add_organization_member_by_email',
        'invite_organization_member',
        'accept_organization_invitation',
        'decline_organization_invitation',
        'revoke_organization_invitation',
        'organization_pending_invitations',
        'my_pending_invitations',
        'set_password_with_invitation_code',
        'remove_organization_member',
        'set_member_role',
        'set_default_organization',
        'organization_members_of',
        'all_organizations',
        -- orders and grants (paying and granting check for a system admin)
        'credit_order_quote',
        'credit_list_price',
        'create_credit_order',
        'order_personal_credits',
        'cancel_credit_order',
        'credit_orders_of',
        'credit_orders_awaiting_payment',
        'record_order_payment',
        'record_order_payment_check',
        'grant_credits',
        'grant_credits_check',
        -- credits
        'add_credits_to_pool',
        'buy_credit_package',
        'top_up_personal_balance',
        'allocate_credits_to_user',
        'allocate_credits_to_users',
        'reclaim_credits_from_user',
        'set_member_standing_credits',
        'set_allocation_policy',
        'set_monthly_refresh_amount',
        'set_low_balance_threshold',
        'acknowledge_credit_alert',
        'resolve_credit_alert',
        -- credit requests (a member asks, the organization's admins answer)
        'request_credits',
        'preview_credit_request',
        'withdraw_credit_request',
        'approve_credit_request',
        'preview_credit_request_approval',
        'decline_credit_request',
        'my_credit_requests',
        'org_credit_requests',
        -- subscriptions and plans
        'create_subscription',
        'set_subscription_status',
        'subscription_payment_check',
        'record_subscription_payment',
        'renew_subscription',
        'change_subscription_plan',
        'preview_subscription_change',
        'schedule_subscription_change',
        'cancel_subscription',
        'reactivate_subscription',
        'set_billing_calendar',
        'billing_current_period',
        'plan_catalogue',
        'plan_version_list',
        'create_plan',
        'edit_plan',
        'preview_plan_edit',
        'rename_plan',
        'retire_plan',
        -- pricing
        'price_usage',
        'pricing_calculator_for',
        'model_price_list',
        'service_price_list',
        'platform_rule_list',
        'org_pricing_override_list',
        'credit_package_list',
        'pricing_platform_rule_at',
        'pricing_rule_reach',
        'pricing_price_reach',
        'charging_org_for',
        'set_model_price',
        'set_service_price',
        'set_platform_pricing_rule',
        'set_org_pricing_override',
        'save_credit_package',
        'credit_holds_of',
        -- reads (each takes the acting user and authorizes it itself)
        'organization_pool',
        'credit_lots_of',
        'org_billing_summaries',
        'org_billing_summary_of',
        'my_credits',
        'org_billing_metrics_of',
        'org_billing_history_of',
        'member_cards',
        'org_allocations',
        'org_billing_timeline',
        'org_overview',
        'org_runway',
        'analytics_credit_months',
        'system_mrr_months',
        'system_organizations',
        'system_overview',
        'system_plan_mix',
        'audit_entries',
        'audit_actors',
        'audit_actions',
        'billing_past_periods',
        'billing_settings_of',
        'billing_period_last_run',
        'credit_alerts_of',
        'my_credit_alerts',
        -- API keys (140_api_keys.sql): managed by the admins who may make them; the HTTP API
        -- authenticates each request with api_key_authorize and then acts as the key's user
        'create_api_key',
        'revoke_api_key',
        'api_keys_of',
        'api_key_authorize',
        -- usage views over a date range (each authorizes its acting user itself)
        'usage_range',
        'usage_totals',
        'usage_days',
        'usage_hours',
        'usage_services',
        'usage_members',
        'usage_charges',
        -- the HTTP API's own reads (150_api_reads.sql)
        'member_balance',
        'usage_groups'
    ];
    v_name text;
    v_function regprocedure;
    v_audience text;
    v_names text[];
begin
    foreach v_audience in array array['billing_service', 'billing_app'] loop
        v_names := case v_audience
            when 'billing_service' then v_service_functions
            else v_app_functions
        end;
        foreach v_name in array v_names loop
            if not exists (select 1 from pg_proc where proname = v_name and pronamespace = 'public'::regnamespace) then
                raise exception '990_access.sql grants % to %, but no function has that name: update the list.',
                    v_name, v_audience;
            end if;
            for v_function in
                select p.oid::regprocedure from pg_proc p
                 where p.proname = v_name and p.pronamespace = 'public'::regnamespace
            loop
                execute format('alter routine %s security definer set search_path = pg_catalog, public, pg_temp',
                               v_function);
                execute format('grant execute on routine %s to %I', v_function, v_audience);
            end loop;
        end loop;
    end loop;
end;
$access$;
