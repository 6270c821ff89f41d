"""The whole-stack tests' API keys, in a module of its own: test modules import them from here, since
`from conftest import ...` finds whichever directory's conftest pytest imported first."""

# Tenants for isolation tests: one key per tenant, plus the default tenant "local"; an admin key.
API_KEYS = {"key-blue": "blue", "key-green": "green"}
ADMIN_KEY = "key-ops"
