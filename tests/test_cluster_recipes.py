"""The cluster recipes in cluster/: the image, the launcher config, the KubeRay manifests.

Nothing is launched: the files are parsed and checked against Ray's own launcher schema, the
KubeRay fields we rely on, and one another (one image name, one Ray version, the security
defaults the README promises).
"""

from __future__ import annotations

import copy
import importlib.metadata
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from caviar.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
DOCKERFILE = CLUSTER / "Dockerfile"
LAUNCHER = CLUSTER / "aws-gpu.yaml"
RAYCLUSTER = CLUSTER / "kuberay" / "raycluster.yaml"
RAYJOB = CLUSTER / "kuberay" / "rayjob.yaml"

IMAGE = "caviar:0.1.0"
RUNS = "/mnt/caviar-runs"
# {Ray version}-py{XY}[-cpu|-gpu|-cuXYZ], the official rayproject/ray tag scheme.
RAY_TAG = re.compile(r"^(\d+)\.(\d+)\.(\d+)-py(\d)(\d+)(?:-(?:cpu|gpu|cu\d+))?$")


def _ray_major_minor() -> tuple[int, int]:
    major, minor = importlib.metadata.version("ray").split(".")[:2]
    return int(major), int(minor)


def _name_and_tag(image: str) -> str:
    """`registry.example.com/team/caviar:0.1.0` -> `caviar:0.1.0` (the registry is the user's)."""
    return image.rsplit("/", 1)[-1]


def _load_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


# --- Dockerfile ------------------------------------------------------------------------------


def _dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _arg_defaults(instructions: list[tuple[str, str]]) -> dict[str, str]:
    args: dict[str, str] = {}
    for word, rest in instructions:
        if word == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args[name.strip()] = value.strip().strip('"')
    return args


def _expand(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], m[0]), value)


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return _dockerfile_instructions(DOCKERFILE.read_text())


def _base_image(instructions: list[tuple[str, str]]) -> str:
    froms = [rest for word, rest in instructions if word == "FROM"]
    assert len(froms) == 1, f"expected one FROM, found {froms}"
    # ARGs before FROM are what FROM may use.
    first_from = next(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return _expand(froms[0].split()[0], _arg_defaults(instructions[:first_from]))


def test_dockerfile_base_is_the_official_ray_image_of_the_installed_ray(dockerfile):
    base = _base_image(dockerfile)
    repo, _, tag = base.partition(":")
    assert repo == "rayproject/ray", f"base image {base!r} is not an official Ray image"
    m = RAY_TAG.match(tag)
    assert m, f"base image tag {tag!r} is not {{ray version}}-py{{XY}}[-cpu|-gpu|-cuXYZ]"
    assert (int(m[1]), int(m[2])) == _ray_major_minor(), (
        f"the image's Ray {m[1]}.{m[2]} differs from the installed Ray "
        f"{importlib.metadata.version('ray')}; every node and client must run the same Ray"
    )
    assert (m[4], m[5]) == ("3", "11"), f"the image's Python is {m[4]}.{m[5]}, expected 3.11"


def test_dockerfile_installs_the_repo_not_editable(dockerfile):
    copies = [rest.split() for word, rest in dockerfile if word == "COPY"]
    sources = [(parts[-2], parts[-1]) for parts in copies if not parts[-2].startswith("--")]
    repo_copies = [dest for src, dest in sources if src == "."]
    assert repo_copies, f"no `COPY . DIR` of the repository in {DOCKERFILE}"
    installs = [
        rest for word, rest in dockerfile if word == "RUN" and re.search(r"pip install\b", rest)
    ]
    dest = repo_copies[0].rstrip("/")
    installing = [r for r in installs if re.search(rf'["\']?{re.escape(dest)}/?["\']?(\s|;|$)', r)]
    assert installing, f"no `pip install {dest}` after `COPY . {dest}`"
    for run in installing:
        assert not re.search(r"\s(-e|--editable)\s", run), "the image needs a regular install"


def test_dockerfile_names_the_image_and_keeps_ray_at_the_base_version(dockerfile):
    args = _arg_defaults(dockerfile)
    assert args.get("CAVIAR_IMAGE") == IMAGE
    labels = " ".join(_expand(rest, args) for word, rest in dockerfile if word == "LABEL")
    assert f'io.caviar.image="{IMAGE}"' in labels
    version = importlib.metadata.version("caviar")
    assert IMAGE.endswith(f":{version}"), f"the image tag should be caviar's version {version}"
    assert f'org.opencontainers.image.version="{version}"' in labels
    runs = " ".join(rest for word, rest in dockerfile if word == "RUN")
    # pip must not replace the base image's Ray with another release.
    assert re.search(r"ray\[[^\]]*\]==\$\{?ray_version\}?", runs), "pin ray to the base image's"


def test_dockerignore_keeps_environments_runs_and_tokens_out():
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for entry in (".venv", "caviar_runs", ".git", "**/__pycache__", "**/auth_token"):
        assert entry in ignored, f".dockerignore lacks {entry}"
    assert "README.md" not in ignored  # pyproject's readme: the build needs it


# --- Ray cluster launcher --------------------------------------------------------------------


@pytest.fixture(scope="module")
def launcher() -> dict[str, Any]:
    return yaml.safe_load(LAUNCHER.read_text())


def _ray_start(commands: list[str]) -> tuple[list[str], str]:
    """The argv of the one `ray start` among commands, and the command it is in."""
    found = [c for c in commands if re.search(r"\bray start\b", c)]
    assert len(found) == 1, f"expected one `ray start` command, found {found}"
    words = shlex.split(found[0].replace(";", " ; "))
    i = words.index("start") - 1
    end = words.index(";", i) if ";" in words[i:] else len(words)
    return words[i:end], found[0]


def _flag(argv: list[str], name: str) -> str | None:
    for j, word in enumerate(argv):
        if word == name and j + 1 < len(argv):
            return argv[j + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    return None


@pytest.mark.integration  # imports Ray
def test_launcher_config_passes_rays_own_validation(launcher):
    util = pytest.importorskip("ray.autoscaler._private.util")
    # What `ray up` does before it calls the cloud: defaults merged, schema and node types checked.
    prepared = util.prepare_config(copy.deepcopy(launcher))
    util.validate_config(prepared)


def test_launcher_config_has_the_required_keys_and_node_types(launcher):
    for key in (
        "cluster_name",
        "max_workers",
        "provider",
        "auth",
        "docker",
        "available_node_types",
        "head_node_type",
        "head_start_ray_commands",
        "worker_start_ray_commands",
    ):
        assert key in launcher, f"{LAUNCHER.name} lacks {key}"
    assert launcher["provider"]["type"] == "aws"
    types = launcher["available_node_types"]
    assert launcher["head_node_type"] in types
    for name, node_type in types.items():
        assert {"resources", "node_config"} <= node_type.keys(), name
        assert node_type["node_config"].get("InstanceType"), name
    workers = {n: t for n, t in types.items() if n != launcher["head_node_type"]}
    gpu = {n: t for n, t in workers.items() if t["resources"].get("GPU", 0) >= 1}
    assert gpu, "no worker node type with GPU resources"
    for node_type in gpu.values():
        assert node_type.get("min_workers", 0) == 0, "idle GPUs cost money: min_workers 0"
        assert 1 <= node_type["max_workers"] <= launcher["max_workers"]
        family = node_type["node_config"]["InstanceType"].split(".")[0]
        assert family in {"g4dn", "g5", "g6", "g6e", "p3", "p4d", "p5"}, f"{family}: no GPU"


def test_launcher_uses_the_caviar_image_and_mounts_the_run_storage(launcher):
    docker = launcher["docker"]
    assert _name_and_tag(docker["image"]) == IMAGE
    assert docker.get("container_name")
    assert f"-v {RUNS}:{RUNS}" in docker.get("run_options", [])
    # caviar comes with the image; nothing to pip install on the nodes.
    for key in ("setup_commands", "head_setup_commands", "worker_setup_commands"):
        assert not any("pip install" in c for c in launcher.get(key, []))


def test_launcher_keeps_the_dashboard_on_localhost_with_token_auth(launcher):
    head_argv, head_cmd = _ray_start(launcher["head_start_ray_commands"])
    worker_argv, worker_cmd = _ray_start(launcher["worker_start_ray_commands"])
    assert "--head" in head_argv and "--head" not in worker_argv
    assert _flag(head_argv, "--dashboard-host") == "127.0.0.1"
    assert _flag(worker_argv, "--dashboard-host") in (None, "127.0.0.1")
    assert _flag(worker_argv, "--address") == f"$RAY_HEAD_IP:{_flag(head_argv, '--port')}"
    assert _flag(head_argv, "--autoscaling-config") == "~/ray_bootstrap_config.yaml"

    # Token auth on both kinds of node, from a file that file_mounts brings to every node.
    mounted = {remote.replace("~", "$HOME", 1) for remote in launcher.get("file_mounts", {})}
    for cmd in (head_cmd, worker_cmd):
        env = dict(re.findall(r"\b(RAY_AUTH_\w+)=(\S+)", cmd.split("ray start")[0]))
        assert env.get("RAY_AUTH_MODE") == "token", cmd
        assert "RAY_AUTH_TOKEN" not in env, "no token values in the config"
        token_path = env.get("RAY_AUTH_TOKEN_PATH", "")
        assert any(token_path.startswith(m + "/") for m in mounted), (
            f"RAY_AUTH_TOKEN_PATH={token_path!r} is not under a file_mounts directory {mounted}"
        )


# --- KubeRay ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raycluster() -> dict[str, Any]:
    docs = _load_all(RAYCLUSTER)
    assert len(docs) == 1
    return docs[0]


@pytest.fixture(scope="module")
def rayjob_docs() -> dict[str, dict[str, Any]]:
    docs = _load_all(RAYJOB)
    kinds = {d["kind"]: d for d in docs}
    assert len(kinds) == len(docs) == 2
    return kinds


def _cluster_specs(raycluster, rayjob_docs) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("RayCluster", raycluster["spec"]),
        ("RayJob", rayjob_docs["RayJob"]["spec"]["rayClusterSpec"]),
    ]


def _containers(cluster_spec: dict[str, Any]) -> list[dict[str, Any]]:
    pods = [cluster_spec["headGroupSpec"]["template"]["spec"]]
    pods += [g["template"]["spec"] for g in cluster_spec["workerGroupSpecs"]]
    return [c for pod in pods for c in pod["containers"]]


def test_kuberay_manifests_are_ray_io_v1(raycluster, rayjob_docs):
    assert raycluster["apiVersion"] == "ray.io/v1" and raycluster["kind"] == "RayCluster"
    job = rayjob_docs["RayJob"]
    assert job["apiVersion"] == "ray.io/v1"
    assert rayjob_docs["ConfigMap"]["apiVersion"] == "v1"
    for doc in (raycluster, job, rayjob_docs["ConfigMap"]):
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])


def test_kuberay_clusters_have_a_head_and_a_gpu_worker_group(raycluster, rayjob_docs):
    for kind, spec in _cluster_specs(raycluster, rayjob_docs):
        head = spec["headGroupSpec"]
        assert head["template"]["spec"]["containers"], kind
        groups = spec["workerGroupSpecs"]
        assert groups, f"{kind}: no worker group"
        for group in groups:
            assert group["groupName"] and "rayStartParams" in group
            assert 0 <= group["minReplicas"] <= group.get("replicas", 0) <= group["maxReplicas"]
            (container,) = group["template"]["spec"]["containers"]
            limits = container["resources"]["limits"]
            assert int(limits["nvidia.com/gpu"]) >= 1, f"{kind}: worker without a GPU limit"
            requests = container["resources"].get("requests", {})
            if "nvidia.com/gpu" in requests:  # Kubernetes insists they be equal
                assert requests["nvidia.com/gpu"] == limits["nvidia.com/gpu"]
        for container in _containers(spec):
            res = container["resources"]
            # Ray sizes a node from its limits; requests below them would overcommit the node.
            for key in ("cpu", "memory"):
                assert str(res["requests"][key]) == str(res["limits"][key]), (kind, key)


def test_kuberay_images_and_ray_version_agree(raycluster, rayjob_docs):
    for kind, spec in _cluster_specs(raycluster, rayjob_docs):
        for container in _containers(spec):
            assert _name_and_tag(container["image"]) == IMAGE, (kind, container["name"])
        major, minor = (int(x) for x in spec["rayVersion"].split(".")[:2])
        assert (major, minor) == _ray_major_minor(), f"{kind}: rayVersion {spec['rayVersion']}"


def test_kuberay_security_defaults(raycluster, rayjob_docs):
    for kind, spec in _cluster_specs(raycluster, rayjob_docs):
        assert spec.get("authOptions", {}).get("mode") == "token", f"{kind}: no token auth"
        head = spec["headGroupSpec"]
        assert head.get("serviceType", "ClusterIP") == "ClusterIP", kind
        assert not head.get("enableIngress", False), kind
        for group in [head, *spec["workerGroupSpecs"]]:
            params = group["rayStartParams"]
            # Kubernetes stores them as map[string]string: a bare 0 or true would be rejected.
            assert all(isinstance(v, str) for v in params.values()), (kind, params)
    # The long-lived cluster keeps the dashboard / Jobs API on the pod's localhost; the RayJob
    # cannot (the operator polls the job through the head service) and relies on the above.
    assert raycluster["spec"]["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    job_head = rayjob_docs["RayJob"]["spec"]["rayClusterSpec"]["headGroupSpec"]
    assert job_head["rayStartParams"]["dashboard-host"] in ("127.0.0.1", "0.0.0.0")


def test_kuberay_pods_share_the_run_storage(raycluster, rayjob_docs):
    for kind, spec in _cluster_specs(raycluster, rayjob_docs):
        pods = [spec["headGroupSpec"]["template"]["spec"]]
        pods += [g["template"]["spec"] for g in spec["workerGroupSpecs"]]
        for pod in pods:
            claims = {
                v["name"]: v["persistentVolumeClaim"]["claimName"]
                for v in pod.get("volumes", [])
                if "persistentVolumeClaim" in v
            }
            mounts = {
                m["mountPath"]: m["name"]
                for c in pod["containers"]
                for m in c.get("volumeMounts", [])
            }
            assert mounts.get(RUNS) in claims, f"{kind}: a pod without {RUNS} on the shared claim"
            assert claims[mounts[RUNS]] == "caviar-runs"


def test_rayjob_runs_the_configmap_spec_and_cleans_up(rayjob_docs, tmp_path):
    job = rayjob_docs["RayJob"]["spec"]
    assert job["shutdownAfterJobFinishes"] is True
    assert job.get("submissionMode", "K8sJobMode") in ("K8sJobMode", "HTTPMode", "SidecarMode")

    argv = shlex.split(job["entrypoint"])
    run = argv.index("run")
    assert argv[:run] in (["caviar"], ["python", "-m", "caviar.cli"]), job["entrypoint"]
    spec_path, rest = argv[run + 1], argv[run + 2 :]
    assert _flag(rest, "--address") == "auto"
    assert _flag(rest, "--storage") == RUNS

    # The spec file is the ConfigMap, mounted on the head (where a Ray job's driver runs).
    configmap = rayjob_docs["ConfigMap"]
    head_pod = job["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    volumes = {v["name"]: v for v in head_pod["volumes"]}
    mount = next(
        m
        for c in head_pod["containers"]
        for m in c.get("volumeMounts", [])
        if spec_path.startswith(m["mountPath"].rstrip("/") + "/")
    )
    assert volumes[mount["name"]]["configMap"]["name"] == configmap["metadata"]["name"]
    key = spec_path[len(mount["mountPath"].rstrip("/")) + 1 :]
    assert key in configmap["data"], f"the ConfigMap has no {key}"

    # ... and it is a valid caviar spec that asks for GPUs.
    spec_file = tmp_path / key
    spec_file.write_text(configmap["data"][key])
    spec = load_spec(spec_file)
    assert spec.resources.gpu > 0
