"""The HTTP API: the third adapter beside the screens (pages/) and the `billing` command.

It holds no SQL: every route authenticates its API key through billing_core.api_keys, then calls billing_core
acting as the key's user (organization and system routes, on the app's database role) or as a metered service
(charging routes, on the service role), inside `database.acting_through_key` so that the key's id reaches the
attribution metadata and the audit log. `create_app` (api.app) builds the application; `billing api serve` runs it.
"""
