"""Request generators for the demo and the tests, in `switchyard eval` input form:

    {"method": "POST", "path": "/v1/chat/completions", "host": "api.example",
     "source_ip": "127.0.0.1", "headers": {"x-tenant-id": "acme", ...}}

Deterministic for a given seed. Standard library only.
"""
import random

HOST = "api.example"
SOURCE_IP = "127.0.0.1"  # what the filter sees for requests sent to Envoy over loopback

# (tenant, weight, plans it may have)
TENANTS = [
    ("acme", 12, ["pro", "enterprise"]),          # override: candidate
    ("globex", 10, ["pro", "enterprise", "free"]),  # opted out of support_copilot
    ("bank-one", 8, ["enterprise"]),              # regulated: stays on control
    ("bank-two", 4, ["enterprise"]),              # regulated
    ("our-company", 6, ["enterprise"]),           # staff dogfood: candidate
    ("initech", 10, ["pro", "free"]),             # opted in to agent_actions
    ("hooli", 10, ["free", "pro", "enterprise"]),
    ("umbrella", 8, ["free", "pro"]),
    ("stark", 8, ["enterprise", "pro"]),
    ("wayne", 6, ["free"]),
    ("soylent", 6, ["free", "pro"]),
]
REGIONS = ["eu-west-1", "us-east-1", "ap-south-1"]
QUESTIONS = [
    "How do I reset my password?", "Why was my card declined?", "Export my invoices as CSV",
    "The app crashes on login", "Can I change my plan mid-cycle?", "Where is my order?",
]


def _weighted(rng, items):
    total = sum(w for _, w, _ in items)
    x = rng.uniform(0, total)
    for item in items:
        x -= item[1]
        if x <= 0:
            return item
    return items[-1]


def realistic(n, seed=1):
    """Traffic that looks like a support product: tenants with their plans, users with
    multi-turn conversations, chat completions and agent calls."""
    rng = random.Random(seed)
    users = {}         # tenant -> [(user, plan)]
    convs = {}         # user -> [conversation ids]
    out = []
    for i in range(n):
        tenant, _, plans = _weighted(rng, TENANTS)
        pool = users.setdefault(tenant, [])
        if len(pool) < 3 or rng.random() < 0.25:
            pool.append(("u-%s-%04d" % (tenant, rng.randrange(10000)), rng.choice(plans)))
        user, plan = rng.choice(pool)
        cpool = convs.setdefault(user, [])
        if not cpool or rng.random() < 0.3:
            cpool.append("conv-%08x" % rng.getrandbits(32))
        conv = rng.choice(cpool)
        headers = {"x-tenant-id": tenant, "x-user-id": user, "x-plan": plan,
                   "x-region": rng.choice(REGIONS), "x-request-id": "demo-%06d" % i}
        r = rng.random()
        if tenant == "initech":      # the tenant that opted in to agent actions uses them
            r = r * 0.5 + 0.5 if r < 0.5 else r
        if r < 0.72:
            path = "/v1/chat/completions"
            headers["x-conversation-id"] = conv
        elif r < 0.94:
            path = rng.choice(["/v1/agent", "/v1/agent/actions", "/v1/agent/tools/search"])
        else:
            path = rng.choice(["/v1/models", "/v1/embeddings"])
        method = "GET" if path == "/v1/models" else "POST"
        out.append({"method": method, "path": path, "host": HOST, "source_ip": SOURCE_IP,
                    "headers": headers})
    return out


def varied(n, seed=2, id_prefix="v"):
    """Traffic that probes the corners: missing tenants/units/plans, unknown tenants, odd paths
    and query strings, header name case, cookies, spoofed switchyard headers."""
    rng = random.Random(seed)
    tenants = [t for t, _, _ in TENANTS] + ["GLOBEX", "globex ", "unknown-%d", ""]
    paths = ["/v1/chat/completions", "/v1/chat/completions", "/v1/chat/completions?stream=true",
             "/v1/chat/completions/", "/v1/chat/completionsx", "/v1/chat", "/v1/agent",
             "/v1/agent/run", "/v1/agents", "/v1/agent?x=1", "/V1/agent", "/v1/embeddings", "/",
             "/healthz"]
    methods = ["POST"] * 6 + ["GET", "PUT", "DELETE"]
    out = []
    for i in range(n):
        h = {}
        t = rng.choice(tenants)
        if t == "unknown-%d":
            t = "unknown-%d" % rng.randrange(50)
        if t != "" and rng.random() < 0.95:
            h[rng.choice(["x-tenant-id", "X-Tenant-Id", "X-TENANT-ID"])] = t.strip() or t
        if rng.random() < 0.85:
            h["x-user-id"] = "user-%d" % rng.randrange(3000)
        if rng.random() < 0.85:
            h["x-conversation-id"] = "c-%d" % rng.randrange(100000)
        if rng.random() < 0.8:
            h["x-plan"] = rng.choice(["free", "pro", "enterprise", "Pro", "trial"])
        if rng.random() < 0.5:
            h["x-region"] = rng.choice(REGIONS)
        if rng.random() < 0.2:
            h["cookie"] = "sid=%d; theme=dark" % rng.randrange(1000)
        if rng.random() < 0.08:
            h["x-switchyard-cluster"] = rng.choice(
                ["support_model_b", "agent_model", "support_model_a", "default_upstream"])
        if rng.random() < 0.04:
            h["x-switchyard-exposure"] = 'support_answer_model_route;variation="candidate"'
        h["x-request-id"] = "%s-%06d" % (id_prefix, i)
        out.append({"method": rng.choice(methods), "path": rng.choice(paths), "host": HOST,
                    "source_ip": SOURCE_IP, "headers": h})
    return out
