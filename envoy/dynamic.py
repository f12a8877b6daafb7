"""An Envoy whose switchyard filter configuration (the policy) comes from ECDS, read from a
watched file, so the policy can change without a restart (tests and demos).

    from dynamic import EcdsEnvoy
    with EcdsEnvoy(policy_text, mocks, name="dyn") as envoy:
        verdict, counters, t_rename = envoy.push_and_wait(new_policy_text)   # "accepted"/"rejected"

The bootstrap is envoy/bootstrap.yaml.tmpl with the Wasm filter declared by `config_discovery`
(genconfig.render(..., ecds_path=...)); the resource file (genconfig.render_ecds_resource) lives
in WORKDIR/NAME-ecds/switchyard.yml and is replaced atomically (push_policy.write_atomic).
Every cluster of the Mocks is in the bootstrap, so a pushed policy may route to any of them.
"""
import os

import genconfig
import harness
import push_policy


class EcdsEnvoy(harness.Envoy):
    RESOURCE_FILE = "switchyard.yml"

    @property
    def ecds_dir(self):
        return os.path.join(self.workdir, self.name + "-ecds")

    @property
    def ecds_path(self):
        return os.path.join(self.ecds_dir, self.RESOURCE_FILE)

    def render(self):
        return genconfig.render(
            self.policy_text, self.wasm, self.mocks.addresses(),
            default_upstream=self.mocks.addresses()[genconfig.DEFAULT_CLUSTER],
            listener_port=self.want_listener_port, admin_port=self.want_admin_port,
            access_log_path=self.access_log_path, route_header=self.route_header,
            node_id=self.name, extra_clusters=list(self.mocks.clusters),
            ecds_path=self.ecds_path, ecds_watch_dir=self.ecds_dir)

    def write_config(self):
        """The bootstrap and the initial resource file (with self.policy_text)."""
        super().write_config()
        os.makedirs(self.ecds_dir, exist_ok=True)
        self.push(self.policy_text)

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    def push(self, policy_text, version_info=None, raw=None):
        """Atomically replace the resource file with `policy_text` (or with `raw` resource text,
        e.g. a broken file); returns time.time() just after the rename."""
        text = raw if raw is not None else genconfig.render_ecds_resource(
            policy_text, self.wasm, version_info=version_info)
        return push_policy.write_atomic(self.ecds_path, text)

    def ecds(self):
        """extension_config_discovery.http_filter.switchyard.* counters (and version_text)."""
        return push_policy.ecds_counters(self.admin_url(""))

    def push_and_wait(self, policy_text, timeout=15, **kw):
        """push() and wait for Envoy's verdict: ("accepted" | "rejected" | "timeout",
        counters after, time of the rename)."""
        before = self.ecds()
        t = self.push(policy_text, **kw)
        verdict, after = push_policy.wait_for_update(self.admin_url(""), before, timeout)
        return verdict, after, t
