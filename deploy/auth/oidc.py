# gpupool hub login with any OpenID Connect provider (Keycloak, Authentik, Azure AD/Entra,
# Okta, Dex, ...) whose ID token or userinfo carries the user's groups.
#
#   GPUPOOL_AUTH_CONFIG=deploy/auth/oidc.py \
#   GPUPOOL_OIDC_ISSUER=https://sso.example.org/realms/lab \
#   GPUPOOL_OAUTH_CALLBACK_URL=https://hub.example.org/hub/oauth_callback \
#   GPUPOOL_OAUTH_CLIENT_ID=gpupool GPUPOOL_OAUTH_CLIENT_SECRET=... \
#   GPUPOOL_OIDC_ALLOWED_GROUPS="gpu-users gpu-admins" \
#   GPUPOOL_OIDC_ADMIN_GROUPS="gpu-admins"  jupyterhub -f jupyterhub_config.py
#
# Endpoints are those of the issuer's /.well-known/openid-configuration (Keycloak's paths
# below; set GPUPOOL_OIDC_AUTHORIZE_URL / _TOKEN_URL / _USERINFO_URL for other providers).
# The claim with the groups is GPUPOOL_OIDC_GROUPS_CLAIM (default `groups`; in Keycloak
# add a "Group Membership" mapper without full path). At each login the hub's groups are
# set from it (manage_groups); pool.yaml maps them to pool roles:
#   admins:    {groups: [gpu-admins]}      # custom:gpupool:admin: the dashboard's actions
#   observers: {groups: [finance]}         # custom:gpupool:observe: read-only dashboard
#   quotas:    {groups: {students: {gpus: 1, gpu_hours_per_month: 40}}}
# Members of GPUPOOL_OIDC_ADMIN_GROUPS are also hub admins (the hub's own admin page).
import os

c = get_config()  # noqa: F821
issuer = os.environ["GPUPOOL_OIDC_ISSUER"].rstrip("/")
env = os.environ.get

c.JupyterHub.authenticator_class = "generic-oauth"
c.GenericOAuthenticator.login_service = env("GPUPOOL_OIDC_NAME", "single sign-on")
c.GenericOAuthenticator.authorize_url = env(
    "GPUPOOL_OIDC_AUTHORIZE_URL", f"{issuer}/protocol/openid-connect/auth"
)
c.GenericOAuthenticator.token_url = env(
    "GPUPOOL_OIDC_TOKEN_URL", f"{issuer}/protocol/openid-connect/token"
)
c.GenericOAuthenticator.userdata_url = env(
    "GPUPOOL_OIDC_USERINFO_URL", f"{issuer}/protocol/openid-connect/userinfo"
)
c.GenericOAuthenticator.scope = ["openid", "profile", "email"]
c.GenericOAuthenticator.username_claim = env("GPUPOOL_OIDC_USERNAME_CLAIM", "preferred_username")
c.GenericOAuthenticator.oauth_callback_url = os.environ["GPUPOOL_OAUTH_CALLBACK_URL"]
c.GenericOAuthenticator.client_id = os.environ["GPUPOOL_OAUTH_CLIENT_ID"]
c.GenericOAuthenticator.client_secret = os.environ["GPUPOOL_OAUTH_CLIENT_SECRET"]
c.GenericOAuthenticator.manage_groups = True
c.GenericOAuthenticator.auth_state_groups_key = (
    f"oauth_user.{env('GPUPOOL_OIDC_GROUPS_CLAIM', 'groups')}"
)
c.GenericOAuthenticator.allowed_groups = set(env("GPUPOOL_OIDC_ALLOWED_GROUPS", "").split())
c.GenericOAuthenticator.admin_groups = set(env("GPUPOOL_OIDC_ADMIN_GROUPS", "").split())
c.Authenticator.allow_all = False
c.JupyterHub.load_groups = {}
