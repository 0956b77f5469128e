"""One settings object per process: `AUTOGLM_` env vars (nested with `__`) over a YAML file."""

from __future__ import annotations

import json
import os
import socket
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from schemas import Priority

PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "whsec_changeme", "secret"})
# Secrets that were once published in this repository's example files: anyone can read them.
PUBLISHED_SECRETS = frozenset({"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})


def unusable_secret(value: str | None) -> bool:
    """A placeholder or a published secret: refused outside dev mode. None means unset."""
    if value is None:
        return False
    return value in PLACEHOLDER_SECRETS or value in PUBLISHED_SECRETS or value.endswith("changeme")


class ServerSettings(BaseModel):
    protocol: Literal["http", "https"] = "http"
    host: str = "127.0.0.1"
    port: int = 8000
    streaming: bool = True
    compression: Literal["none", "gzip"] = "gzip"
    compression_min_bytes: int = 1024
    # Submissions (`POST /v1/tasks`, `/v1/infer`) may carry a screenshot inline: a 4 MB image is
    # 5.4 MB as base64. Large inputs never reach Kafka (see `blobs`).
    max_body_bytes: int = 8_388_608
    # Every other route but uploads (`blobs.max_file_bytes`).
    max_other_body_bytes: int = 1_048_576
    # Per-project token bucket on submissions; 0 turns it off.
    rate_limit_per_s: float = 0.0
    rate_limit_burst: int = 200
    # The API process also projects task-events into Redis (one projector per group member).
    run_projector: bool = True
    # How long the projector waits to fill a batch of events before writing it to Redis. 0
    # writes what is ready at once: a transition reaches Redis sooner, but the API process then
    # writes many small batches, and with the process busy (polls, submits) that measured slower
    # end to end (`make bench BENCH_ARGS=celery_baseline` runs both).
    projector_batch_wait_ms: float = Field(default=100.0, ge=0, le=1000)
    # How long the broker holds the projector's fetch while no event is readable. It answers as
    # soon as a commit makes events readable, so a longer wait costs no latency; a short one only
    # costs the broker CPU (an empty fetch every few ms).
    projector_fetch_wait_ms: int = Field(default=100, ge=1, le=1000)
    # ... unless this many bytes are readable: below it, the broker holds the fetch for the whole
    # wait. Task states reach Redis first from the API and the workers themselves; the projector
    # is what makes Redis a projection (crashes, replays), not the fast path, so it reads in
    # chunks: without this, every commit (two per task) made the broker answer it a fetch.
    projector_fetch_min_bytes: int = Field(default=1 << 20, ge=1)
    # Admission control: above the bound, submissions get 503 + Retry-After before the body is
    # read. The bound adapts between min and max to keep accepted submissions' p90 under target.
    admission_control: bool = True
    admission_min_inflight: int = 128
    admission_max_inflight: int = 1024
    admission_max_infer: int = 256
    admission_target_ms: float = 100.0
    # How long a submission that finds every slot taken may wait for one before its 503 (0: it
    # is refused at once).
    admission_max_wait_ms: float = Field(default=0.0, ge=0, le=10_000)
    admission_max_pending_bytes: int = 64 * 1_048_576
    # Retry-After of a refused submission: `admission_retry_after_s` while refusals are few; it
    # grows by a second each second they outnumber `admission_refusal_budget` times the
    # accepted submissions, up to `admission_retry_after_max_s` (api.admission.RetryAfter).
    admission_retry_after_s: int = Field(default=1, ge=1)
    admission_retry_after_max_s: int = Field(default=10, ge=1)
    admission_refusal_budget: float = Field(default=0.1, gt=0)


class GrpcSettings(BaseModel):
    """`autoglm grpc`: the gRPC front door (schemas/autoglm/v1/service.proto)."""

    host: str = "127.0.0.1"
    port: int = 50051
    # The largest request or answer; by default the submission limit plus room for framing.
    max_message_bytes: int | None = None
    reflection: bool = True
    # Submissions of one Session processed at the same time (they share group commits).
    session_concurrency: int = 64
    # Calls in progress at once (a Session counts as one); gRPC refuses more with
    # RESOURCE_EXHAUSTED before they start.
    max_concurrent_rpcs: int = 1024
    # Prometheus metrics of this process on a port of its own; None: not served.
    metrics_port: int | None = None


class KafkaSettings(BaseModel):
    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    partitions: int = 4
    replication_factor: int = 1
    # Set on the platform's topics when given: with `acks=all`, a commit then needs this many
    # in-sync replicas (2 of 3 on a cluster, so one broker may die without losing a record).
    # None keeps the brokers' default.
    min_insync_replicas: int | None = None
    # Extra librdkafka options for every client (security.protocol, sasl.*, ssl.* ...).
    client_config: dict[str, str | int | bool] = Field(default_factory=dict)
    # Group commit in the API: a transaction closes after this many tasks or this many ms.
    group_commit_max_messages: int = 512
    group_commit_max_ms: float = 2.0
    # A submission that finds the committer idle waits `group_commit_max_ms` for company only
    # under load (the previous transaction carried more than one submission); otherwise it is
    # committed at once, like a database's group commit (commit_siblings). True: always wait.
    group_commit_wait_alone: bool = False
    # Committer threads, each with its own transactional.id, gathering their batches in turn: a
    # transaction never opens on the producer whose previous one Kafka may still be finishing
    # (refused with CONCURRENT_TRANSACTIONS and retried 20 ms later; `mcp.producer._Turns`), and
    # while one lane waits for its commit the next gathers. 1: one producer for everything.
    group_commit_lanes: int = 2
    transaction_timeout_ms: int = 30_000
    request_timeout_s: float = 10.0
    # What a consumer fetches ahead of its processing: bounded, so that a backlog of any size
    # costs a worker or the dispatcher the same memory (librdkafka's defaults: 100,000
    # messages and 64 MiB).
    consumer_prefetch_messages: int = 1_000
    consumer_prefetch_kbytes: int = 4_096
    # How producers encode record values; consumers read both (a `content-type` header says).
    encoding: Literal["json", "protobuf"] = "json"
    # How a worker group shares its partitions (`mcp.groups`). `classic`: librdkafka's
    # cooperative-sticky assignor, which evens out how many partitions each worker holds, not
    # its share of each topic, so a worker that joins may take every partition of one priority
    # lane. `consumer` (Kafka >= 4.0, KIP-848): the brokers' `range` assignor gives each worker
    # its share of every lane, still moving only what must move. `auto`: `consumer` where the
    # brokers offer it and let the group time out a silent worker after
    # `worker.session_timeout_ms`, else `classic`. The other groups (projector, dispatcher)
    # stay classic.
    group_protocol: Literal["auto", "classic", "consumer"] = "auto"

    @model_validator(mode="after")
    def _check_replicas(self) -> KafkaSettings:
        if self.min_insync_replicas is not None and not (
            1 <= self.min_insync_replicas <= self.replication_factor
        ):
            raise ValueError("kafka.min_insync_replicas must be between 1 and replication_factor")
        return self


class RedisSettings(BaseModel):
    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "autoglm:"
    task_retention_s: int = 7 * 86_400
    idempotency_ttl_s: int = 86_400
    stream_maxlen: int = 10_000
    stream_ttl_s: int = 3_600
    # Per-project task indexes, timelines and kept inputs for `GET /v1/tasks` and the dashboard;
    # off only to measure what they cost (`make bench`).
    task_indexes: bool = True
    # A Redis Cluster (or ElastiCache with cluster mode on): `url` names any one node and the
    # client (redis-py's `RedisCluster`) finds the others.
    cluster: bool = False
    # The webhook schedule is spread over this many hash slots; 0 picks 1 on a single Redis and
    # 16 on a cluster. Changing it rebuilds the webhook state from Kafka.
    webhook_shards: int = Field(default=0, ge=0, le=1024)

    @property
    def shards(self) -> int:
        """How many keys the webhook schedule is spread over."""
        return self.webhook_shards or (16 if self.cluster else 1)


class WorkerSettings(BaseModel):
    max_attempts: int = 3
    retry_backoff_s: float = 0.5
    retry_backoff_max_s: float = 30.0
    commit_every_n: int = 64
    commit_every_ms: float = 5.0
    # Commit as soon as nothing is running or waiting (the outcomes in the transaction are all
    # there is): the cadence above then only batches under load. False: always wait for it.
    commit_when_idle: bool = True
    # Consecutive transactions take turns on two producers (two transactional.ids per slot), so
    # that a transaction never opens while the broker is still finishing the previous one
    # (refused with CONCURRENT_TRANSACTIONS, retried 20 ms later; see `mcp.transaction`).
    alternate_producers: bool = True
    poll_timeout_s: float = 0.05
    heartbeat_interval_s: float = 2.0
    # How long the broker holds the worker's fetch while no task is readable. It answers as soon
    # as a commit makes one readable, so this costs no latency, except after a pause (flow
    # control): librdkafka fetches a resumed partition once the fetch in flight returns, up to
    # this long when the other partitions are quiet. 5 ms cost the broker 0.15-0.3 of a core in
    # empty fetches (idle or at 100 tasks/s).
    fetch_wait_max_ms: int = Field(default=50, ge=1, le=1000)
    session_timeout_ms: int = 10_000
    # How far past its lowest unfinished record a partition is read (in offsets) while a slow
    # record is in flight; the finished ones above it travel in the commit's metadata.
    lane_window: int = 2048


class WebhookSettings(BaseModel):
    # Seconds after the first attempt's failure; the Standard Webhooks / Svix schedule.
    schedule_s: list[float] = Field(
        default_factory=lambda: [
            0.0,
            5.0,
            300.0,
            1800.0,
            7200.0,
            18000.0,
            36000.0,
            50400.0,
            72000.0,
            86400.0,
        ]
    )
    jitter: float = 0.1
    connect_timeout_s: float = 5.0
    timeout_s: float = 15.0
    max_concurrency: int = 256
    per_host_concurrency: int = 8
    # project -> list of active secrets (`whsec_<base64>`); several during a rotation.
    secrets: dict[str, list[str]] = Field(default_factory=dict)
    # After a rotation (`POST /v1/webhooks/secret/rotate`) the old secret signs this long too.
    rotation_overlap_s: float = Field(default=86_400.0, ge=0)
    allow_networks: list[str] = Field(default_factory=list)
    output_throttle_ms: int = 500
    # Every delivery state goes to Kafka (`webhook-deliveries`) before Redis, so losing Redis
    # loses no webhook. Off: the state lives in Redis only (faster; what `make bench` compares).
    journal: bool = True
    # Under load (outcomes ending together) attempt outcomes are journaled at most once per
    # this many ms, in one Kafka transaction: the broker's cost is mostly per transaction. A
    # lone outcome is journaled at once. It delays a task's next webhook by as much, no more.
    journal_window_ms: float = 100.0


class S3Settings(BaseModel):
    bucket: str = "autoglm"
    # Leave out for AWS; an S3-compatible server's URL otherwise (http:// is allowed).
    endpoint: str | None = None
    region: str = "us-east-1"
    # Left out: the usual AWS_* environment variables and instance credentials apply.
    access_key_id: str | None = None
    secret_access_key: str | None = None
    virtual_hosted_style: bool = False


class BlobSettings(BaseModel):
    """Where large inputs, uploaded files and large results live (claim check)."""

    backend: Literal["filesystem", "s3"] = "filesystem"
    # Filesystem root (a shared volume when API and workers run on different hosts);
    # `<cache_dir>/blobs` when left out.
    path: str | None = None
    # Keys of this deployment start with it, in the directory or the bucket.
    key_prefix: str = ""
    s3: S3Settings = Field(default_factory=S3Settings)
    # Claim check: an image above this many bytes, or a payload / result whose JSON is larger
    # than `offload_bytes`, is stored as a file and the Kafka record carries its id.
    inline_image_bytes: int = 32_768
    offload_bytes: int = 65_536
    # Uploads through `POST /v1/files` (and each file part of a submission).
    max_file_bytes: int = 33_554_432
    file_retention_s: int = 7 * 86_400
    # How often an API process deletes expired files and bytes a crashed writer left behind.
    sweep_interval_s: float = 600.0
    connect_timeout_s: float = 2.0
    timeout_s: float = 60.0
    max_retries: int = 3


class ModelSpec(BaseModel):
    name: str
    backend: Literal["echo", "transformers", "openai"] = "echo"
    path: str | None = None
    url: str | None = None
    served_model_name: str | None = None
    api_key: str | None = None
    actions: list[str] = Field(default_factory=lambda: ["generate"])
    max_batch_size: int = 8
    max_wait_ms: float = 5.0
    # Batches one worker runs at once; None takes the backend's default (echo and openai 8,
    # transformers 1: a second batch would compete for the same device).
    concurrency: int | None = Field(default=None, ge=1, le=256)
    device: str = "auto"
    dtype: str = "auto"
    partitions: int | None = None
    builtin: bool = False


Role = Literal["admin", "developer", "viewer"]


class ConfiguredKey(BaseModel):
    project: str
    role: Role = "developer"


class AuthSettings(BaseModel):
    enabled: bool = False
    # Static keys from configuration: key -> project (role developer) or {project, role}.
    # Keys managed through `/v1/keys` live in Kafka and need no entry here.
    api_keys: dict[str, str | ConfiguredKey] = Field(default_factory=dict)
    # An admin key of the `admin_project` to create the first managed keys with.
    bootstrap_admin_key: str | None = None
    admin_project: str = "default"
    # JWTs: HS256 with `jwt_secret`, RS256/ES256 with the keys of a JWKS file (chosen by `kid`).
    jwt_secret: str | None = None
    jwks_file: str | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_leeway_s: float = 30.0
    # Claims that name the caller's project and role; a token without a role claim gets this one.
    jwt_project_claim: str = "project"
    jwt_role_claim: str = "role"
    jwt_default_role: Role = "viewer"
    # `/metrics`: behind a token with the metrics permission ("token") or on a port of its own.
    metrics: Literal["token", "port"] = "token"
    metrics_port: int = 9108


class TelemetrySettings(BaseModel):
    # `/metrics` of a worker, dispatcher or standalone projector (`--metrics-port`); None: none.
    # The API serves its own on its HTTP port (or `auth.metrics_port`).
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_host: str = "0.0.0.0"
    # Prometheus series of the API's requests and submissions (the other processes' are cheap
    # and always kept); off only to measure what they cost.
    metrics: bool = True
    # OpenTelemetry traces, exported over OTLP as the standard `OTEL_*` variables say. Also on
    # when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set; off when
    # `OTEL_SDK_DISABLED=true`.
    tracing: bool = False
    # One JSON object per log line, with task_id, trace_id, model and worker_id where known.
    json_logs: bool = False


class ProjectQuota(BaseModel):
    """Limits of one project; 0 turns a limit off."""

    rate_per_s: float | None = None  # None: server.rate_limit_per_s
    burst: int | None = None  # None: server.rate_limit_burst
    max_active: int = 0  # queued + running tasks at most
    max_body_bytes: int | None = None  # None: server.max_body_bytes
    default_priority: Priority = "normal"
    weight: float = Field(default=1.0, gt=0)  # share of a model's workers against other projects


class QuotaSettings(BaseModel):
    default: ProjectQuota = Field(default_factory=ProjectQuota)
    projects: dict[str, ProjectQuota] = Field(default_factory=dict)

    def of(self, project: str) -> ProjectQuota:
        return self.projects.get(project, self.default)


def default_models() -> list[ModelSpec]:
    return [
        ModelSpec(
            name="echo",
            backend="echo",
            actions=["generate", "embed", "classify", "phone_step"],
            max_batch_size=64,
            max_wait_ms=0,
            builtin=True,
        ),
        ModelSpec(
            name="glm-tiny",
            backend="transformers",
            actions=["generate", "embed", "classify", "phone_step"],
            max_batch_size=8,
            builtin=True,
        ),
    ]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AUTOGLM_", env_nested_delimiter="__", extra="ignore", validate_default=True
    )

    dev_mode: bool = False
    instance_id: str = Field(default_factory=lambda: socket.gethostname().split(".")[0])
    cache_dir: str = Field(
        default_factory=lambda: os.path.join(os.path.expanduser("~"), ".cache", "autoglm-mcp")
    )
    default_model: str = "echo"
    log_level: str = "INFO"
    # How long a thread keeps the GIL while another waits for it (`sys.setswitchinterval`);
    # None keeps Python's 5 ms. See `mcp.threads`.
    gil_switch_interval_ms: float | None = Field(default=2.0, gt=0, le=100)
    # The garbage collector of a server process once started (`mcp.heap`): start-up's objects
    # frozen out of its reach, and a young collection every `gc_young_threshold` net
    # allocations (None keeps Python's 700).
    gc_freeze_after_start: bool = True
    gc_young_threshold: int | None = Field(default=10_000, ge=100)
    # How often a server process asks glibc to give back the memory its arenas hold free
    # (`malloc_trim`, `mcp.heap`); None never does.
    heap_trim_interval_s: float | None = Field(default=30.0, gt=0)
    # Before each trim, a full collection, which also empties CPython's free lists (tuples,
    # lists, dicts, floats kept for reuse): left alone, they fill over the first minutes and
    # hold their blocks for the life of the process.
    heap_trim_full_collection: bool = True
    server: ServerSettings = Field(default_factory=ServerSettings)
    grpc: GrpcSettings = Field(default_factory=GrpcSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    blobs: BlobSettings = Field(default_factory=BlobSettings)
    quotas: QuotaSettings = Field(default_factory=QuotaSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    models: list[ModelSpec] = Field(default_factory=default_models)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("AUTOGLM_CONFIG")
        if config_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return (*sources, file_secret_settings)

    @model_validator(mode="after")
    def _check(self) -> Settings:
        names = [m.name for m in self.models]
        duplicated = {n for n in names if names.count(n) > 1}
        if duplicated:
            raise ValueError(f"model names must be unique: {sorted(duplicated)}")
        if self.default_model not in names:
            raise ValueError(f"default_model {self.default_model!r} is not in models {names}")
        if not self.dev_mode:
            self._refuse_unusable_secrets()
        return self

    def _refuse_unusable_secrets(self) -> None:
        """Outside dev mode the process does not start on a placeholder or published secret."""
        hint = "set a secret of your own (README: deploying)"
        for project, secrets in self.webhooks.secrets.items():
            if any(unusable_secret(s) for s in secrets):
                raise ValueError(
                    f"webhook secret of project {project!r} is a placeholder or published: {hint}"
                )
        if self.auth.enabled and unusable_secret(self.auth.jwt_secret):
            raise ValueError(f"auth.jwt_secret is a placeholder or published: {hint}")
        if self.auth.enabled and unusable_secret(self.auth.bootstrap_admin_key):
            raise ValueError(f"auth.bootstrap_admin_key is a placeholder or published: {hint}")
        if self.auth.enabled and any(unusable_secret(key) for key in self.auth.api_keys):
            raise ValueError(f"a key of auth.api_keys is a placeholder or published: {hint}")
        if unusable_secret(self.blobs.s3.secret_access_key):
            raise ValueError(f"blobs.s3.secret_access_key is a placeholder or published: {hint}")

    def to_env(self) -> dict[str, str]:
        """Environment variables that give a child process exactly these settings."""
        env: dict[str, str] = {}
        for name, value in self:
            key = f"AUTOGLM_{name.upper()}"
            if isinstance(value, BaseModel):
                env[key] = value.model_dump_json()
            elif isinstance(value, list):
                env[key] = json.dumps([v.model_dump(mode="json") for v in value])
            else:
                env[key] = str(value).lower() if isinstance(value, bool) else str(value)
        return env

    def model(self, name: str) -> ModelSpec | None:
        return next((m for m in self.models if m.name == name), None)

    def kafka_client_config(self, **overrides: Any) -> dict[str, Any]:
        """librdkafka options shared by every producer and consumer of this process."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.kafka.bootstrap_servers,
            "client.id": f"autoglm-{self.instance_id}",
        }
        config.update(self.kafka.client_config)
        config.update(overrides)
        return config


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
