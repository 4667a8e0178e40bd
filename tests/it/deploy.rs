//! The files ops copy from `deploy/`, checked by the real programs and against each
//! other: the systemd unit by `systemd-analyze verify` and its offline security score,
//! the Kubernetes manifests by `kubernetes-validate` (the API's own schemas, strict) and
//! by cross-references (selectors, ports, secrets, mounts against probes.yaml), the
//! container files by what the Dockerfile copies and declares, every shipped probes.yaml
//! by `tocsin check`, and the Prometheus files by promtool.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;

const BIN: &str = env!("CARGO_BIN_EXE_tocsin");

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Value {
    serde_yaml::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} (scripts/test.sh installs it): {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `tocsin check` on a shipped config whose absolute paths are moved into `dir`, with
/// the files it names (a customer list) created there.
fn check_config(text: &str, moves: &[(&str, &str)], dir: &Path) {
    let mut text = text.to_string();
    for (from, to) in moves {
        let to = dir.join(to);
        text = text.replace(from, to.to_str().unwrap());
    }
    let path = dir.join("probes.yaml");
    std::fs::write(&path, text).unwrap();
    let (code, out, err) =
        run(Command::new(BIN).args(["check", "--config", path.to_str().unwrap()]));
    assert_eq!(code, 0, "{out}{err}");
}

// ---------------------------------------------------------------- systemd

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let unit = read("deploy/systemd/tocsin.service");
    // verify checks that the binaries exist: point them at the one just built.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tocsin.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/tocsin", BIN)).unwrap();
    let (code, out, err) = run(Command::new("systemd-analyze").arg("verify").arg(&path));
    assert_eq!(code, 0, "{out}{err}");
    // An unknown or misspelt directive is only a warning to verify: refuse any output.
    assert!(err.trim().is_empty() && out.trim().is_empty(), "{out}{err}");

    let (_, out, err) = run(Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&path));
    let score: f64 = out
        .lines()
        .chain(err.lines())
        .find_map(|l| {
            l.split("Overall exposure level for tocsin.service: ")
                .nth(1)
        })
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {out}{err}"));
    assert!(score <= 2.0, "exposure {score} (0 is best, 10 worst)");

    let directives: BTreeMap<&str, Vec<&str>> = unit
        .lines()
        .filter_map(|l| l.split_once('='))
        .fold(BTreeMap::new(), |mut m, (k, v)| {
            m.entry(k.trim()).or_default().push(v.trim());
            m
        });
    let one = |k: &str| directives.get(k).map(|v| v[0]).unwrap_or("");
    assert_eq!(one("User"), "tocsin");
    assert_eq!(one("StateDirectory"), "tocsin");
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("Restart"), "on-failure");
    assert_eq!(one("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert!(one("ExecStartPre").ends_with("tocsin check"));
    assert_eq!(one("Environment"), "TOCSIN_CONFIG=/etc/tocsin/probes.yaml");
    // ICMP probes may need a raw socket: that capability and no other.
    assert_eq!(one("AmbientCapabilities"), "CAP_NET_RAW");
    assert_eq!(one("CapabilityBoundingSet"), "CAP_NET_RAW");

    // The sysusers line creates the user the unit runs as.
    let sysusers = read("deploy/systemd/tocsin.sysusers");
    assert!(
        sysusers.lines().any(|l| l.starts_with("u tocsin ")),
        "{sysusers}"
    );

    // The config shipped for the unit is valid, and its state is where the unit keeps it.
    let cfg = read("deploy/systemd/probes.yaml");
    let parsed: Value = serde_yaml::from_str(&cfg).unwrap();
    assert_eq!(parsed["data_dir"], "/var/lib/tocsin");
    std::fs::write(
        dir.path().join("customers.csv"),
        "email,name\na@example.com,A\n",
    )
    .unwrap();
    check_config(
        &cfg,
        &[
            ("/var/lib/tocsin", "var"),
            ("/etc/tocsin/customers.csv", "customers.csv"),
        ],
        dir.path(),
    );
}

// ---------------------------------------------------------------- container

/// Instructions of a Dockerfile, continuation lines joined: (stage index, keyword, rest).
fn dockerfile(text: &str) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    let mut stage = 0;
    let mut pending = String::new();
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('#') || (l.is_empty() && pending.is_empty()) {
            continue;
        }
        if let Some(part) = l.strip_suffix('\\') {
            pending.push_str(part);
            pending.push(' ');
            continue;
        }
        pending.push_str(l);
        let full = std::mem::take(&mut pending);
        let (kw, rest) = full.split_once(' ').unwrap_or((&full, ""));
        let kw = kw.to_ascii_uppercase();
        if kw == "FROM" && !out.is_empty() {
            stage += 1;
        }
        out.push((stage, kw, rest.trim().to_string()));
    }
    out
}

#[test]
fn the_container_image_is_multi_stage_non_root_with_volume_and_health_check() {
    let ins = dockerfile(&read("deploy/container/Dockerfile"));
    let last = ins.last().unwrap().0;
    assert!(last >= 1, "multi-stage");
    let runtime: Vec<&(usize, String, String)> = ins.iter().filter(|i| i.0 == last).collect();
    let get = |kw: &str| -> Vec<&str> {
        runtime
            .iter()
            .filter(|i| i.1 == kw)
            .map(|i| i.2.as_str())
            .collect()
    };
    let from = get("FROM")[0];
    assert!(
        from.contains("distroless") && from.contains("nonroot"),
        "{from}"
    );
    let user = get("USER");
    assert_eq!(user, ["65532:65532"], "the runtime stage runs as non-root");
    assert_eq!(get("VOLUME"), [r#"["/var/lib/tocsin"]"#]);
    assert_eq!(get("EXPOSE"), ["9778"]);
    let health = get("HEALTHCHECK")[0];
    assert!(
        health.contains(r#"CMD ["/usr/local/bin/tocsin", "health""#),
        "{health}"
    );
    assert_eq!(get("ENTRYPOINT"), [r#"["/usr/local/bin/tocsin"]"#]);

    // Everything copied from the build context exists (build from the repository root).
    for (_, kw, rest) in &ins {
        if kw != "COPY" || rest.starts_with("--from") {
            continue;
        }
        let words: Vec<&str> = rest
            .split_whitespace()
            .filter(|w| !w.starts_with("--"))
            .collect();
        for src in &words[..words.len() - 1] {
            assert!(
                repo(src).exists(),
                "COPY {src}: no such file in the repository"
            );
        }
    }
    // .dockerignore keeps the build context small and state out of the image.
    let ignore = read(".dockerignore");
    for p in ["target", "var", ".git"] {
        assert!(
            ignore.lines().any(|l| l.trim() == p),
            "{p} not in .dockerignore"
        );
    }

    // The image's default config is valid, listens beyond loopback on the exposed port,
    // and keeps its state on the volume.
    let cfg = read("deploy/container/probes.yaml");
    let parsed: Value = serde_yaml::from_str(&cfg).unwrap();
    assert_eq!(parsed["listen"], "0.0.0.0:9778");
    assert_eq!(parsed["data_dir"], "/var/lib/tocsin");
    let dir = tempfile::tempdir().unwrap();
    check_config(&cfg, &[("/var/lib/tocsin", "var")], dir.path());
}

// ---------------------------------------------------------------- Kubernetes

fn manifests() -> BTreeMap<String, Value> {
    let k = yaml("deploy/kubernetes/kustomization.yaml");
    let mut out = BTreeMap::new();
    for r in k["resources"].as_sequence().unwrap() {
        let file = r.as_str().unwrap();
        let v = yaml(&format!("deploy/kubernetes/{file}"));
        out.insert(v["kind"].as_str().unwrap().to_string(), v);
    }
    out
}

#[test]
fn the_kubernetes_manifests_validate_against_the_api_schemas() {
    let dir = repo("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    let (code, out, err) = run(Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict", "-k", "1.30.0"])
        .args(&files));
    assert_eq!(code, 0, "{out}{err}");
    let text = format!("{out}{err}");
    let passed = text.matches(" passed for resource ").count();
    // Every file but the ServiceMonitor (a custom resource without a schema there, checked
    // below against what it refers to).
    assert_eq!(passed, files.len() - 1, "{text}");
    assert!(
        text.contains("Couldn't find schema for kind ServiceMonitor"),
        "{text}"
    );
}

#[test]
fn the_kubernetes_manifests_agree_with_each_other_and_with_probes_yaml() {
    let m = manifests();
    for kind in ["ConfigMap", "StatefulSet", "Service", "ServiceMonitor"] {
        assert!(m.contains_key(kind), "kustomization lacks a {kind}");
    }
    let (cm, sts, svc, sm) = (
        &m["ConfigMap"],
        &m["StatefulSet"],
        &m["Service"],
        &m["ServiceMonitor"],
    );
    let labels = |v: &Value| -> BTreeSet<(String, String)> {
        v.as_mapping()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str().unwrap().into(), v.as_str().unwrap().into()))
            .collect()
    };
    let pod = &sts["spec"]["template"];
    let pod_labels = labels(&pod["metadata"]["labels"]);
    assert!(labels(&sts["spec"]["selector"]["matchLabels"]).is_subset(&pod_labels));
    assert!(labels(&svc["spec"]["selector"]).is_subset(&pod_labels));
    assert!(
        labels(&sm["spec"]["selector"]["matchLabels"])
            .is_subset(&labels(&svc["metadata"]["labels"]))
    );
    assert_eq!(sts["spec"]["replicas"], 1, "SQLite state: one writer");
    assert_eq!(sts["spec"]["serviceName"], svc["metadata"]["name"]);

    let c = &pod["spec"]["containers"][0];
    let port_names: BTreeSet<&str> = c["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    let svc_port = &svc["spec"]["ports"][0];
    assert!(port_names.contains(svc_port["targetPort"].as_str().unwrap()));
    let sm_port = sm["spec"]["endpoints"][0]["port"].as_str().unwrap();
    assert_eq!(
        sm_port,
        svc_port["name"].as_str().unwrap(),
        "ServiceMonitor port is the Service's"
    );
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(c[probe]["httpGet"]["path"], "/healthz");
        assert!(port_names.contains(c[probe]["httpGet"]["port"].as_str().unwrap()));
    }

    // Non-root, as the image is built.
    let sc = &pod["spec"]["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["runAsUser"], 65532);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    // ICMP probes: an unprivileged ICMP socket, admitted by the pod's sysctl.
    assert_eq!(sc["sysctls"][0]["name"], "net.ipv4.ping_group_range");
    assert_eq!(sc["sysctls"][0]["value"], "0 2147483647");

    // The config: mounted where --config points, listening on the container port,
    // keeping state on the claimed volume, reading secrets the pod is given.
    let mounts: BTreeMap<&str, &str> = c["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap(),
                v["mountPath"].as_str().unwrap(),
            )
        })
        .collect();
    let args: Vec<&str> = c["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let config_path = args[args.iter().position(|a| *a == "--config").unwrap() + 1];
    let (config_dir, config_file) = config_path.rsplit_once('/').unwrap();
    assert_eq!(mounts["config"], config_dir);
    let volumes = pod["spec"]["volumes"].as_sequence().unwrap();
    let cm_volume = volumes.iter().find(|v| v["name"] == "config").unwrap();
    assert_eq!(cm_volume["configMap"]["name"], cm["metadata"]["name"]);
    let probes_yaml = cm["data"][config_file]
        .as_str()
        .expect("the ConfigMap holds the file --config names");
    let cfg: Value = serde_yaml::from_str(probes_yaml).unwrap();
    let port: u16 = cfg["listen"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(c["ports"][0]["containerPort"], port);
    assert_eq!(cfg["data_dir"].as_str().unwrap(), mounts["data"]);
    let claim = &sts["spec"]["volumeClaimTemplates"][0];
    assert_eq!(claim["metadata"]["name"], "data");

    let env: BTreeSet<&str> = c["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    for var in [
        cfg["api"]["token_env"].as_str().unwrap(),
        cfg["mail"]["username_env"].as_str().unwrap(),
        cfg["mail"]["password_env"].as_str().unwrap(),
    ] {
        assert!(env.contains(var), "the pod does not set {var}");
    }
    let secret = yaml("deploy/kubernetes/secret.example.yaml");
    for e in c["env"].as_sequence().unwrap() {
        let r = &e["valueFrom"]["secretKeyRef"];
        assert_eq!(r["name"], secret["metadata"]["name"]);
        let key = r["key"].as_str().unwrap();
        assert!(
            secret["stringData"][key].is_string(),
            "secret.example.yaml lacks {key}"
        );
    }

    // The ConfigMap's files, as mounted, make a config that `tocsin check` accepts.
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in cm["data"].as_mapping().unwrap() {
        std::fs::write(
            dir.path().join(name.as_str().unwrap()),
            body.as_str().unwrap(),
        )
        .unwrap();
    }
    check_config(probes_yaml, &[("/var/lib/tocsin", "var")], dir.path());
}

// ---------------------------------------------------------------- Prometheus

/// Several instances on one PostgreSQL: three replicas spread over zones, only the leader
/// ready, the password from a Secret; and the two-host systemd example.
#[test]
fn the_cluster_examples_validate_and_agree() {
    let dir = repo("deploy/kubernetes/cluster");
    let k = yaml("deploy/kubernetes/cluster/kustomization.yaml");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .collect();
    files.sort();
    let (code, out, err) = run(Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict", "-k", "1.30.0"])
        .args(&files));
    assert_eq!(code, 0, "{out}{err}");
    let text = format!("{out}{err}");
    assert_eq!(
        text.matches(" passed for resource ").count(),
        files.len(),
        "{text}"
    );
    let mut m = BTreeMap::new();
    for r in k["resources"].as_sequence().unwrap() {
        let v = yaml(&format!(
            "deploy/kubernetes/cluster/{}",
            r.as_str().unwrap()
        ));
        m.insert(v["kind"].as_str().unwrap().to_string(), v);
    }
    // A StatefulSet: each pod keeps its name, which is its location.
    let d = &m["StatefulSet"];
    assert!(d["spec"]["replicas"].as_u64().unwrap() >= 3);
    let spread = d["spec"]["template"]["spec"]["topologySpreadConstraints"]
        .as_sequence()
        .unwrap();
    assert!(
        spread
            .iter()
            .any(|c| c["topologyKey"] == "topology.kubernetes.io/zone"),
        "{spread:?}"
    );
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["readinessProbe"]["httpGet"]["path"], "/readyz",
        "only the leader is ready"
    );
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    let env = |name: &str| {
        c["env"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .cloned()
    };
    let location = env("TOCSIN_LOCATION").expect("each pod's location is its name");
    assert_eq!(
        location["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    let pg = env("PGPASSWORD").expect("the password comes from a Secret");
    let secret = yaml("deploy/kubernetes/cluster/postgres-secret.example.yaml");
    let key = pg["valueFrom"]["secretKeyRef"]["key"].as_str().unwrap();
    assert_eq!(
        pg["valueFrom"]["secretKeyRef"]["name"],
        secret["metadata"]["name"]
    );
    assert!(!secret["stringData"][key].is_null());
    let cm = &m["ConfigMap"];
    assert_eq!(
        d["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"],
        cm["metadata"]["name"]
    );
    assert_eq!(
        m["Service"]["spec"]["selector"],
        d["spec"]["selector"]["matchLabels"]
    );
    let probes_yaml = cm["data"]["probes.yaml"].as_str().unwrap();
    assert!(probes_yaml.contains("cluster:") && probes_yaml.contains("store: postgres://"));
    assert!(
        !probes_yaml.contains("location:"),
        "each pod is named after itself"
    );
    // The locations voting are the StatefulSet's pods.
    let name = d["metadata"]["name"].as_str().unwrap();
    let pods: Vec<String> = (0..d["spec"]["replicas"].as_u64().unwrap())
        .map(|i| format!("{name}-{i}"))
        .collect();
    assert!(
        probes_yaml.contains(&format!("locations: [{}]", pods.join(", "))),
        "{probes_yaml}"
    );
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("customers.csv"),
        cm["data"]["customers.csv"].as_str().unwrap(),
    )
    .unwrap();
    let path = tmp.path().join("probes.yaml");
    std::fs::write(
        &path,
        probes_yaml.replace("/var/lib/tocsin", tmp.path().join("var").to_str().unwrap()),
    )
    .unwrap();
    // As the first pod checks it, and as a host outside the StatefulSet would: refused.
    let (code, out, err) = run(Command::new(BIN)
        .args(["check", "--config", path.to_str().unwrap()])
        .env("TOCSIN_LOCATION", &pods[0]));
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run(Command::new(BIN)
        .args(["check", "--config", path.to_str().unwrap()])
        .env("TOCSIN_LOCATION", "elsewhere"));
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("default `location` (TOCSIN_LOCATION, else the host name) `elsewhere` is not one of `cluster.locations`"),
        "{out}{err}"
    );
    let tmp = tempfile::tempdir().unwrap();
    check_config(
        &read("deploy/systemd/probes-cluster.yaml"),
        &[("/var/lib/tocsin", "var")],
        tmp.path(),
    );
}

#[test]
fn the_prometheus_files_pass_promtool() {
    let (code, out, err) = run(Command::new("promtool")
        .args(["check", "config"])
        .arg(repo("deploy/prometheus/prometheus.yml")));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("SUCCESS: 20 rules found"), "{out}");
    let (code, out, err) = run(Command::new("promtool")
        .current_dir(repo("deploy/prometheus"))
        .args(["test", "rules", "tocsin-rules.test.yml"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("SUCCESS"), "{out}");
    // Every alert has at least one unit test.
    let rules = yaml("deploy/prometheus/tocsin-rules.yml");
    let tests = read("deploy/prometheus/tocsin-rules.test.yml");
    for g in rules["groups"].as_sequence().unwrap() {
        for r in g["rules"].as_sequence().unwrap() {
            if let Some(a) = r["alert"].as_str() {
                assert!(
                    tests.contains(&format!("alertname: {a}\n")),
                    "alert {a} has no test"
                );
            }
        }
    }
}
