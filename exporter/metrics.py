"""Every metric this exporter exposes: name, type, labels and HELP text.

This module is the public contract that dashboards and alert rules depend on.
The collector builds its families from these specs, the README's metric table
documents them, and the dashboard tests read ``ALL`` to reject unknown names.
Any change here is a change to the public API: list it in CHANGELOG.md.
"""

from __future__ import annotations

from dataclasses import dataclass

CACHED = (
    " Served from the exporter's cache: refreshed by the {job} job, never fetched at scrape time."
)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: str  # "gauge" or "counter"
    labels: tuple[str, ...]
    help: str
    job: str  # the scheduled job whose snapshot feeds it ("" for exporter-wide)

    @property
    def doc(self) -> str:
        """HELP text, with the caching note for snapshot-fed metrics."""
        if not self.job:
            return self.help
        return self.help + CACHED.format(job=self.job)


def _g(name: str, labels: tuple[str, ...], text: str, job: str) -> MetricSpec:
    return MetricSpec(name, "gauge", labels, text, job)


INVENTORY = "inventory"
DISK_USAGE = "disk_usage"
CONTAINER_SIZES = "container_sizes"
JOBS: tuple[str, ...] = (INVENTORY, DISK_USAGE, CONTAINER_SIZES)

CONTAINER_STATES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
DISK_RESOURCES = ("images", "containers", "volumes", "build_cache")

IMAGE_KEY = ("image_id", "name")

# --- the engine and the exporter -------------------------------------------------------------
UP = _g(
    "docker_up", (), "1 when the last inventory collection from the engine succeeded.", INVENTORY
)
ENGINE_INFO = _g(
    "docker_engine_info",
    ("version", "api_version", "os", "arch", "kernel_version", "product"),
    "Engine identity from /version; product is 'Docker Engine' or 'Podman Engine'.",
    INVENTORY,
)
ENGINE_STORAGE_INFO = _g(
    "docker_engine_storage_info",
    ("data_root", "storage_driver"),
    "The engine's data root (DockerRootDir, a path on the engine's host) and storage driver,"
    " from /info, read with /version; value 1. Alert rules join it with node_exporter's"
    " filesystem of that path.",
    INVENTORY,
)
DATA_ROOT_FS_SIZE = _g(
    "docker_data_root_filesystem_size_bytes",
    (),
    "Size of the filesystem holding the engine's data root, measured by the exporter (statvfs)"
    " where that path is visible to it (see --collect.data-root-filesystem).",
    DISK_USAGE,
)
DATA_ROOT_FS_AVAIL = _g(
    "docker_data_root_filesystem_avail_bytes",
    (),
    "Bytes available to unprivileged users on the filesystem holding the engine's data root,"
    " measured like docker_data_root_filesystem_size_bytes.",
    DISK_USAGE,
)
ALERT_THRESHOLD = _g(
    "docker_exporter_alert_threshold",
    ("threshold",),
    "An alert threshold set for this host by an --alert.* flag (or its target in"
    " --config.file); the rules in alerts.yml use it instead of their default. Only"
    " thresholds that are set have a series.",
    "",
)
COLLECTION_SUCCESS = _g(
    "docker_exporter_collection_success",
    ("collector",),
    "1 when the job's last run succeeded, 0 when it failed or has not run yet.",
    "",
)
COLLECTION_DURATION = _g(
    "docker_exporter_collection_duration_seconds",
    ("collector",),
    "Wall time of the job's last run.",
    "",
)
LAST_SUCCESS = _g(
    "docker_exporter_last_success_timestamp_seconds",
    ("collector",),
    "Unix time when the job last succeeded: the time its data on /metrics was collected."
    " Snapshot age is time() minus this.",
    "",
)
COLLECTION_ERRORS = MetricSpec(
    "docker_exporter_collection_errors_total",
    "counter",
    ("collector",),
    "Runs of the job that failed since the exporter started.",
    "",
)
JOB_SKIPPED = MetricSpec(
    "docker_exporter_collection_skipped_total",
    "counter",
    ("collector",),
    "Runs of the job skipped because the previous run was still going.",
    "",
)

# --- the fleet: the exporter's own /metrics with --config.file ---------------------------------
BUILD_INFO = _g(
    "docker_exporter_build_info",
    ("version", "revision", "python_version"),
    "The exporter's version, the source revision of its image build ('unknown' elsewhere) and"
    " the Python running it; value 1.",
    "",
)
TARGET_INFO = _g(
    "docker_exporter_target_info",
    ("target", "host", "source"),
    "A configured or discovered target; source is file, docker context or docker-machine; value 1.",
    "",
)
TARGET_UP = _g(
    "docker_exporter_target_up",
    ("target",),
    "1 when the target's last inventory collection succeeded (its docker_up).",
    "",
)
TARGET_COLLECTING = _g(
    "docker_exporter_target_collecting",
    ("target",),
    "1 while the target's jobs are scheduled; with --collect.on-scrape, 0 until it is scraped"
    " and again after it has gone unscraped.",
    "",
)
TARGET_LAST_SUCCESS = _g(
    "docker_exporter_target_last_success_timestamp_seconds",
    ("target",),
    "Unix time of the target's last successful inventory collection.",
    "",
)
CONFIG_RELOAD_SUCCESS = _g(
    "docker_exporter_config_last_reload_successful",
    (),
    "1 when the last load of --config.file and its discovery sources succeeded.",
    "",
)
CONFIG_RELOAD_TIME = _g(
    "docker_exporter_config_last_reload_success_timestamp_seconds",
    (),
    "Unix time of the last successful load of --config.file.",
    "",
)

# --- images (inventory job) ----------------------------------------------------------------
IMAGES = _g(
    "docker_images", (), "Distinct images as 'docker images' lists them (one per ID).", INVENTORY
)
IMAGES_DANGLING = _g(
    "docker_images_dangling",
    (),
    "Images without any tag. Docker's containerd image store keeps no untagged image after a"
    " BuildKit rebuild, so it has fewer.",
    INVENTORY,
)
IMAGES_UNUSED = _g(
    "docker_images_unused", (), "Images that no container of any state uses.", INVENTORY
)
IMAGE_SIZE = _g(
    "docker_image_size_bytes",
    IMAGE_KEY,
    "The engine's Size of the image, shared layers included: summing it over images"
    " overcounts disk use (see docker_disk_usage_bytes). Docker's containerd image store"
    " counts the compressed content (layer blobs) too, beside the unpacked layers.",
    INVENTORY,
)
IMAGE_CREATED = _g(
    "docker_image_created_timestamp_seconds", IMAGE_KEY, "Unix time the image was built.", INVENTORY
)
IMAGE_CONTAINERS = _g(
    "docker_image_containers",
    IMAGE_KEY,
    "Containers of any state that use the image, counted from the container list.",
    INVENTORY,
)
IMAGE_TAG_INFO = _g(
    "docker_image_tag_info",
    ("image_id", "repository", "tag"),
    "One series per tag of an image; value 1.",
    INVENTORY,
)
IMAGE_LAST_USED = _g(
    "docker_image_last_used_timestamp_seconds",
    IMAGE_KEY,
    "While a container using the image is running, paused or restarting: the time of the"
    " last list that saw it so (a full list every collection interval, or a list of the"
    " containers an event named); otherwise the newest creation time of any container"
    " using it. No series for an image"
    " that no existing container uses: the engine keeps no record of past use.",
    INVENTORY,
)

# --- containers (inventory job) ------------------------------------------------------------
CONTAINERS = _g(
    "docker_containers",
    ("state",),
    "Containers by state, all seven states always present.",
    INVENTORY,
)
CONTAINER_INFO = _g(
    "docker_container_info",
    ("name", "container_id", "image", "image_id"),
    "Container metadata; value 1. image is the reference the container was created from.",
    INVENTORY,
)
CONTAINER_STATE = _g(
    "docker_container_state", ("name", "state"), "1 for the container's current state.", INVENTORY
)
CONTAINER_CREATED = _g(
    "docker_container_created_timestamp_seconds",
    ("name",),
    "Unix time the container was created.",
    INVENTORY,
)
CONTAINER_HEALTH = _g(
    "docker_container_health_status",
    ("name", "status"),
    "1 for the health status of a container with a healthcheck (healthy, unhealthy, starting).",
    INVENTORY,
)
CONTAINER_EXIT_CODE = _g(
    "docker_container_exit_code", ("name",), "Exit code of an exited container.", INVENTORY
)
CONTAINER_IMAGE_OUTDATED = _g(
    "docker_container_image_outdated",
    ("name",),
    "1 when the tag the container was created from now points at another image or no longer"
    " exists; 0 when it still points at the container's image or the reference is a digest.",
    INVENTORY,
)
CONTAINER_LABELS = _g(
    "docker_container_labels",
    ("name",),
    "Allowlisted container labels as label_<key> labels (see --collect.container-labels); value 1.",
    INVENTORY,
)

# --- container sizes (container_sizes job, opt-in) --------------------------------------------
CONTAINER_RW_SIZE = _g(
    "docker_container_rw_size_bytes",
    ("name",),
    "Bytes in the container's writable layer (SizeRw).",
    CONTAINER_SIZES,
)
CONTAINER_ROOTFS_SIZE = _g(
    "docker_container_rootfs_size_bytes",
    ("name",),
    "Total bytes of the container's root filesystem, image layers included (SizeRootFs).",
    CONTAINER_SIZES,
)

# --- disk usage (disk_usage job, /system/df) ------------------------------------------------
DISK_USAGE_BYTES = _g(
    "docker_disk_usage_bytes",
    ("resource",),
    "Disk used, as the SIZE column of 'docker system df'; for images the real layer store"
    " size with shared layers counted once.",
    DISK_USAGE,
)
DISK_RECLAIMABLE = _g(
    "docker_disk_reclaimable_bytes",
    ("resource",),
    "Bytes not used by any active object, as the RECLAIMABLE column of 'docker system df'.",
    DISK_USAGE,
)
DISK_OBJECTS = _g(
    "docker_disk_usage_objects",
    ("resource",),
    "Objects, as the TOTAL column of 'docker system df'.",
    DISK_USAGE,
)
DISK_ACTIVE = _g(
    "docker_disk_usage_active_objects",
    ("resource",),
    "Active objects, as the ACTIVE column of 'docker system df'.",
    DISK_USAGE,
)
IMAGE_UNIQUE_SIZE = _g(
    "docker_image_unique_size_bytes",
    IMAGE_KEY,
    "Bytes only this image holds (Size - SharedSize): what removing it alone frees. On"
    " Docker's containerd image store SharedSize counts only unpacked layers, so this"
    " includes compressed layer blobs other images share too: removing it frees less.",
    DISK_USAGE,
)
IMAGE_SHARED_SIZE = _g(
    "docker_image_shared_size_bytes",
    IMAGE_KEY,
    "Bytes of the image's layers that other images share.",
    DISK_USAGE,
)
IMAGES_DANGLING_UNIQUE = _g(
    "docker_images_dangling_unique_bytes",
    (),
    "Unique bytes of dangling images no container uses: a lower bound of what"
    " 'docker image prune' frees (layers shared only among pruned images are freed too);"
    " an upper bound on Docker's containerd image store (see docker_image_unique_size_bytes).",
    DISK_USAGE,
)
IMAGES_UNUSED_UNIQUE = _g(
    "docker_images_unused_unique_bytes",
    (),
    "Unique bytes of images no container uses: a lower bound of what 'docker image prune -a'"
    " frees (layers shared only among pruned images are freed too); an upper bound on"
    " Docker's containerd image store (see docker_image_unique_size_bytes).",
    DISK_USAGE,
)

# --- registry update check (registry job; issue 18) --------------------------------------------
REGISTRY = "registry"
UPDATE_STATUSES = ("current", "recreate", "pull", "local", "unknown")
IMAGE_UPDATE_AVAILABLE = _g(
    "docker_image_update_available",
    ("image_id", "tag"),
    "1 when the registry's digest for the tag is none of the image's RepoDigests for that"
    " repository, 0 when it is one of them; absent while unknown (not checked, check failed,"
    " or an image without a registry digest).",
    REGISTRY,
)
CONTAINER_UPDATE_STATUS = _g(
    "docker_container_update_status",
    ("name", "status"),
    "1 for the container's one status: current (runs what its tag points to, and the registry"
    " agrees), recreate (the registry agrees with the local tag, the container runs an older"
    " image), pull (the registry has another image for the tag), local (no registry digest:"
    " built here or pinned by digest; on Docker's containerd image store, a digest the"
    " registry answers 404 for), unknown (not checked yet, or the check failed).",
    REGISTRY,
)
REGISTRY_CHECK_SUCCESS = _g(
    "docker_registry_check_success",
    ("registry",),
    "1 when every tag this target checked at the registry (host[:port], docker.io for Docker"
    " Hub) got an answer in the last run.",
    REGISTRY,
)
REGISTRY_REQUESTS = MetricSpec(
    "docker_registry_requests_total",
    "counter",
    ("registry", "method", "code"),
    "Requests made to the registry and its token service by this exporter (shared by all its"
    " targets: do not sum across targets); code 'error' when no answer came.",
    REGISTRY,
)
REGISTRY_LAST_CHECK = _g(
    "docker_registry_last_check_timestamp_seconds",
    ("registry",),
    "When a manifest check at the registry last succeeded (exporter-wide).",
    REGISTRY,
)
REGISTRY_RATELIMIT_REMAINING = _g(
    "docker_registry_ratelimit_remaining",
    ("registry",),
    "The registry's last ratelimit-remaining header (Docker Hub's pulls left in its window).",
    REGISTRY,
)

ALL: tuple[MetricSpec, ...] = tuple(
    v for v in list(globals().values()) if isinstance(v, MetricSpec)
)

# --- volumes, build cache, compose projects and Swarm services (issue 19) --------------------
BUILD_CACHE_IDLE_FOR = (("24h", 86400.0), ("168h", 604800.0))  # idle_for label, seconds
BUILD_CACHE_STATES = ("in_use", "unused", "shared")

VOLUME_KEY = ("volume",)
VOLUME_SIZE = _g(
    "docker_volume_size_bytes",
    ("volume", "driver"),
    "Bytes in the volume, as 'docker system df -v' shows them; no series where the engine did"
    " not measure it (its -1: volumes of drivers other than local).",
    DISK_USAGE,
)
VOLUME_CONTAINERS = _g(
    "docker_volume_containers",
    VOLUME_KEY,
    "Containers of any state that reference the volume (its RefCount); 0 for a dangling volume.",
    DISK_USAGE,
)
VOLUME_CREATED = _g(
    "docker_volume_created_timestamp_seconds",
    VOLUME_KEY,
    "Unix time the volume was created.",
    DISK_USAGE,
)
VOLUMES_DANGLING = _g(
    "docker_volumes_dangling",
    (),
    "Volumes no container references, as 'docker volume ls -f dangling=true' counts them.",
    DISK_USAGE,
)
VOLUMES_DANGLING_BYTES = _g(
    "docker_volumes_dangling_bytes",
    (),
    "Measured bytes of the dangling volumes: what 'docker volume prune --all' frees.",
    DISK_USAGE,
)
BUILD_CACHE_BYTES = _g(
    "docker_build_cache_bytes",
    ("state",),
    "Build cache bytes by state, each record in one: shared (its data is also an image's"
    " layer, counted in the images' disk use too), else in_use (a build or a newer record"
    " references it), else unused. in_use + unused is the SIZE of 'docker system df', unused"
    " its RECLAIMABLE.",
    DISK_USAGE,
)
BUILD_CACHE_IDLE = _g(
    "docker_build_cache_idle_bytes",
    ("idle_for",),
    "Build cache bytes 'docker builder prune --filter until=<idle_for>' frees: records not in"
    " use, not shared, not internal or frontend, last used longer ago than idle_for (or never),"
    " whose children go too.",
    DISK_USAGE,
)
PROJECT_CONTAINERS = _g(
    "docker_project_containers",
    ("project", "state"),
    "Containers of a compose project (label com.docker.compose.project) or a Swarm stack"
    " (com.docker.stack.namespace) by state, all seven states present for each project.",
    INVENTORY,
)
PROJECT_VOLUME_BYTES = _g(
    "docker_project_volume_bytes",
    ("project",),
    "Measured bytes of the volumes labelled with the compose project or Swarm stack.",
    DISK_USAGE,
)
PROJECT_RW_BYTES = _g(
    "docker_project_rw_bytes",
    ("project",),
    "Bytes in the writable layers of the project's containers (SizeRw; Docker leaves out a"
    " SizeRw of 0, which counts 0).",
    CONTAINER_SIZES,
)

SWARM = "swarm"
JOBS += (SWARM,)
SWARM_DESIRED = _g(
    "docker_swarm_service_replicas_desired",
    ("service", "mode"),
    "Tasks the Swarm service should run: the replicas of a replicated service, one per"
    " eligible node for a global one (ServiceStatus.DesiredTasks). Only on a Swarm manager.",
    SWARM,
)
SWARM_TASKS = _g(
    "docker_swarm_service_tasks",
    ("service", "state"),
    "The service's tasks by their current state, as the manager holds them (the task history"
    " included); state running is always present. Only on a Swarm manager.",
    SWARM,
)

ALL += (
    SWARM_DESIRED,
    SWARM_TASKS,
    VOLUME_SIZE,
    VOLUME_CONTAINERS,
    VOLUME_CREATED,
    VOLUMES_DANGLING,
    VOLUMES_DANGLING_BYTES,
    BUILD_CACHE_BYTES,
    BUILD_CACHE_IDLE,
    PROJECT_CONTAINERS,
    PROJECT_VOLUME_BYTES,
    PROJECT_RW_BYTES,
)
# --- the engine's event stream (GET /events; see docs/events.md) -------------------------------
WATCHING = (
    " Counted from the events the exporter received since it started watching this engine"
    " (0 at each exporter start)."
)
CONTAINER_RESTARTS = MetricSpec(
    "docker_container_restarts_total",
    "counter",
    ("name",),
    "Starts of the container after its first one: restart-policy restarts, docker restart"
    " and docker start of an exited container." + WATCHING,
    "",
)
CONTAINER_OOM_KILLS = MetricSpec(
    "docker_container_oom_kills_total",
    "counter",
    ("name",),
    "The engine's oom events for the container (the kernel's OOM killer hit it). Podman"
    " sends none: there, each die with exit code 137 is inspected once and counted when"
    " State.OOMKilled is true (docker_exporter_events_die_inspects_total says how many could"
    " not be checked)." + WATCHING,
    "",
)
CONTAINER_LAST_EXIT_CODE = _g(
    "docker_container_last_exit_code",
    ("name",),
    "Exit code of the container's most recent die event, kept while it runs again; where the"
    " stream showed no die, the exit code of an exited container from the container list.",
    "",
)
EVENTS_TOTAL = MetricSpec(
    "docker_events_total",
    "counter",
    ("type", "action"),
    "Engine events received, by object type and action (a fixed set; any other is 'other')."
    + WATCHING,
    "",
)
EVENTS_STREAM_UP = _g(
    "docker_exporter_events_stream_up",
    (),
    "1 while the exporter's subscription to the engine's event stream is open.",
    "",
)
EVENTS_RECONNECTS = MetricSpec(
    "docker_exporter_events_reconnects_total",
    "counter",
    (),
    "Times the event stream was opened again after it broke or ended (resumed with since).",
    "",
)
EVENTS_LAST_TIMESTAMP = _g(
    "docker_exporter_events_last_timestamp_seconds",
    (),
    "Engine time (Unix seconds) of the newest event received since the exporter started"
    " watching; no series before the first one.",
    "",
)
EVENTS_REPLAY_GAPS = MetricSpec(
    "docker_exporter_events_replay_gaps_total",
    "counter",
    (),
    "Reconnects after which the engine's replay was full (it holds 256 events): events of"
    " the outage may be missing from the counters.",
    "",
)
EVENTS_DIE_INSPECTS = MetricSpec(
    "docker_exporter_events_die_inspects_total",
    "counter",
    ("result",),
    "Podman only (it sends no oom event): die events with exit code 137 inspected for"
    " State.OOMKilled, by result: oom, no_oom, failed (the container was gone or the inspect"
    " failed: an OOM kill there is not counted), skipped (more than 64 waiting).",
    "",
)
EVENT_METRICS: tuple[MetricSpec, ...] = (
    CONTAINER_RESTARTS,
    CONTAINER_OOM_KILLS,
    CONTAINER_LAST_EXIT_CODE,
    EVENTS_TOTAL,
    EVENTS_STREAM_UP,
    EVENTS_RECONNECTS,
    EVENTS_LAST_TIMESTAMP,
    EVENTS_REPLAY_GAPS,
    EVENTS_DIE_INSPECTS,
)
ALL += EVENT_METRICS
