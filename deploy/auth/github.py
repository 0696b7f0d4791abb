# gpupool hub login with GitHub (OAuthenticator), hub groups from GitHub teams.
#
#   GPUPOOL_AUTH_CONFIG=deploy/auth/github.py \
#   GPUPOOL_OAUTH_CALLBACK_URL=https://hub.example.org/hub/oauth_callback \
#   GPUPOOL_OAUTH_CLIENT_ID=... GPUPOOL_OAUTH_CLIENT_SECRET=... \
#   GPUPOOL_GITHUB_ORG=example-lab  jupyterhub -f jupyterhub_config.py
#
# The OAuth app: GitHub -> Settings -> Developer settings -> OAuth Apps, callback URL as
# above. Members of the org may log in. Each team becomes a hub group named
# "<org>:<team-slug>" at every login (manage_groups), so pool.yaml maps teams to pool
# roles and quotas, e.g.
#   admins:    {groups: ["example-lab:ml-platform"]}
#   observers: {groups: ["example-lab:finance"]}
#   quotas:    {groups: {"example-lab:students": {gpus: 1, gpu_hours_per_month: 50}}}
# and specs.yaml's `groups:` restricts a spec to teams.
import os

c = get_config()  # noqa: F821
org = os.environ["GPUPOOL_GITHUB_ORG"]

c.JupyterHub.authenticator_class = "github"
c.GitHubOAuthenticator.oauth_callback_url = os.environ["GPUPOOL_OAUTH_CALLBACK_URL"]
c.GitHubOAuthenticator.client_id = os.environ["GPUPOOL_OAUTH_CLIENT_ID"]
c.GitHubOAuthenticator.client_secret = os.environ["GPUPOOL_OAUTH_CLIENT_SECRET"]
c.GitHubOAuthenticator.scope = ["read:org"]  # to read org and team membership
c.GitHubOAuthenticator.allowed_organizations = {org}
c.GitHubOAuthenticator.populate_teams_in_auth_state = True
c.GitHubOAuthenticator.manage_groups = True
c.GitHubOAuthenticator.auth_state_groups_key = lambda auth_state: [
    f"{t['organization']['login']}:{t['slug']}" for t in auth_state.get("teams") or ()
]
# the hub's default for the quickstart lets everyone in; here only the org
c.Authenticator.allow_all = False
# groups come from GitHub at each login: the hub may not predefine members
c.JupyterHub.load_groups = {}
