# gpupool hub login with GitLab (gitlab.com or your own), hub groups from GitLab groups.
#
#   GPUPOOL_AUTH_CONFIG=deploy/auth/gitlab.py \
#   GPUPOOL_GITLAB_URL=https://gitlab.example.org \
#   GPUPOOL_OAUTH_CALLBACK_URL=https://hub.example.org/hub/oauth_callback \
#   GPUPOOL_OAUTH_CLIENT_ID=... GPUPOOL_OAUTH_CLIENT_SECRET=... \
#   GPUPOOL_GITLAB_GROUPS="ml-lab ml-lab/students"  jupyterhub -f jupyterhub_config.py
#
# The application: GitLab -> Admin (or a group) -> Applications, scopes `openid profile
# email`, callback URL as above. GitLab's OpenID Connect userinfo carries `groups`, the
# full paths of the user's groups: members of GPUPOOL_GITLAB_GROUPS may log in, and every
# GitLab group becomes a hub group of the same path at each login (manage_groups), e.g.
#   admins:    {groups: ["ml-lab/platform"]}
#   quotas:    {groups: {"ml-lab/students": {gpus: 1}}}
import os

c = get_config()  # noqa: F821
gitlab = os.environ.get("GPUPOOL_GITLAB_URL", "https://gitlab.com").rstrip("/")

c.JupyterHub.authenticator_class = "generic-oauth"
c.GenericOAuthenticator.login_service = "GitLab"
c.GenericOAuthenticator.authorize_url = f"{gitlab}/oauth/authorize"
c.GenericOAuthenticator.token_url = f"{gitlab}/oauth/token"
c.GenericOAuthenticator.userdata_url = f"{gitlab}/oauth/userinfo"
c.GenericOAuthenticator.scope = ["openid", "profile", "email"]
c.GenericOAuthenticator.username_claim = "nickname"
c.GenericOAuthenticator.oauth_callback_url = os.environ["GPUPOOL_OAUTH_CALLBACK_URL"]
c.GenericOAuthenticator.client_id = os.environ["GPUPOOL_OAUTH_CLIENT_ID"]
c.GenericOAuthenticator.client_secret = os.environ["GPUPOOL_OAUTH_CLIENT_SECRET"]
c.GenericOAuthenticator.manage_groups = True
c.GenericOAuthenticator.auth_state_groups_key = "oauth_user.groups"
c.GenericOAuthenticator.allowed_groups = set(os.environ["GPUPOOL_GITLAB_GROUPS"].split())
c.Authenticator.allow_all = False
c.JupyterHub.load_groups = {}
