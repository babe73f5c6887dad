"""Whether each container should be pulled, recreated or left alone: pure functions of the
engine's records and the registry's answers.

A container's tag is the reference it was created from (inspect's ``Config.Image``; the
container list shows the image ID instead once the tag moved). The registry's digest for
that tag is compared with **all** of the local image's ``RepoDigests`` for that repository
(the engine sorts them, so the registry's may be any of them). After a pull by tag the
engine stores the digest it pulled by: a multi-arch image's index digest, which is what a
HEAD with the index types in ``Accept`` answers too.

Docker's containerd image store names every tagged image's own manifest digest in
``RepoDigests``, whether it was pulled or built here (the classic store records a digest only
on a pull or a push), and nothing in the engine's answer tells the two apart. So for such an
image (``ImageRecord.own_digests``) whose tag the registry answers with another digest, or
not at all, the registry is asked once more, by the local digest, in that repository: it has
it (the image came from there, or was pushed there) and the tag moved: ``pull``; it answers
404 (never pushed or pulled: built here): ``local``; anything else: ``unknown``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .records import ContainerRecord, ImageRecord
from .reference import Reference, ReferenceError, parse_normalized, parse_reference, repo_digest
from .registry import RegistryStats, TagCheck

CURRENT, RECREATE, PULL, LOCAL, UNKNOWN = "current", "recreate", "pull", "local", "unknown"

TagKey = tuple[str, str, str]  # (registry, repository path, tag)


def key_of(ref: Reference) -> TagKey:
    """(registry, path, tag); for a reference by digest, the digest in the tag's place."""
    return (ref.registry, ref.path, ref.tag or ref.digest)


@dataclass(frozen=True)
class ContainerUpdate:
    name: str
    status: str


@dataclass(frozen=True)
class ImageUpdate:
    image_id: str  # short, as the other per-image series
    tag: str  # as the engine lists it in RepoTags
    available: bool


@dataclass(frozen=True)
class RegistryOutcome:
    registry: str
    success: bool  # every tag of this target's run at it got an answer
    stats: RegistryStats


@dataclass(frozen=True)
class UpdatesSnapshot:
    collected_at: float
    containers: tuple[ContainerUpdate, ...]
    images: tuple[ImageUpdate, ...]
    registries: tuple[RegistryOutcome, ...]


def _short(image_id: str) -> str:
    return image_id.split(":", 1)[-1][:12]


def _is_id(ref: str, image_id: str) -> bool:
    bare = ref.removeprefix("sha256:")
    return (
        len(bare) >= 12
        and all(c in "0123456789abcdef" for c in bare)
        and image_id.removeprefix("sha256:").startswith(bare)
    )


def needs_inspect(container: ContainerRecord) -> bool:
    """The list shows an image ID (the tag moved, or it was created from an ID): only
    inspect's Config.Image still names what it was created from."""
    return not container.image or _is_id(container.image, container.image_id)


def tag_ref(text: str) -> Reference | None:
    """A reference that names a tag (``:latest`` by default); None for a digest-pinned,
    an ID or an invalid one."""
    try:
        ref = parse_normalized(text)
    except ReferenceError:
        return None
    if ref.digest:
        return None
    return parse_reference(text)


def _digests(image: ImageRecord | None, name: str) -> frozenset[str]:
    if image is None:
        return frozenset()
    found = (repo_digest(d) for d in image.repo_digests)
    return frozenset(pair[1] for pair in found if pair is not None and pair[0] == name)


class LocalImages:
    """The engine's images, looked up by ID and by normalised tag."""

    def __init__(self, images: Iterable[ImageRecord]) -> None:
        self.by_id: dict[str, ImageRecord] = {}
        self.by_tag: dict[TagKey, ImageRecord] = {}
        self.tags: list[tuple[ImageRecord, str, Reference]] = []
        for image in images:
            self.by_id[image.id] = image
            for text in image.repo_tags:
                ref = tag_ref(text)
                if ref is not None:
                    self.by_tag[key_of(ref)] = image
                    self.tags.append((image, text, ref))


def _local_digest_refs(image: ImageRecord, ref: Reference) -> list[Reference]:
    return [Reference(ref.domain, ref.path, digest=d) for d in sorted(_digests(image, ref.name))]


def _needs_digest_check(image: ImageRecord | None, ref: Reference, check: TagCheck | None) -> bool:
    """A containerd-store image whose tag the registry answered with another digest, or 404."""
    if image is None or not image.own_digests or check is None:
        return False
    digests = _digests(image, ref.name)
    if not digests:
        return False
    return (bool(check.digest) and check.digest not in digests) or check.not_found


def _registry_has(
    image: ImageRecord, ref: Reference, known: Mapping[TagKey, TagCheck]
) -> bool | None:
    """Whether the registry has one of the image's local digests in ``ref``'s repository:
    True (one answered 200), False (all answered 404), None (not asked, or no answer)."""
    answers = [known.get(key_of(r)) for r in _local_digest_refs(image, ref)]
    if any(a is not None and a.digest for a in answers):
        return True
    if answers and all(a is not None and a.not_found for a in answers):
        return False
    return None


def digests_to_check(
    containers: Iterable[ContainerRecord],
    created_from: Mapping[str, str],
    local: LocalImages,
    checks: Mapping[TagKey, TagCheck],
    all_tags: bool = False,
) -> tuple[Reference, ...]:
    """The local digests (by-digest references) worth one registry HEAD each: see above."""
    wanted: dict[TagKey, Reference] = {}
    pairs: list[tuple[ImageRecord | None, Reference]] = []
    for c in containers:
        ref = tag_ref(created_from.get(c.id, c.image))
        if ref is not None:
            pairs.append((local.by_tag.get(key_of(ref)) or local.by_id.get(c.image_id), ref))
    if all_tags:
        pairs += [(image, ref) for image, _, ref in local.tags]
    for image, ref in pairs:
        if image is not None and _needs_digest_check(image, ref, checks.get(key_of(ref))):
            for r in _local_digest_refs(image, ref):
                wanted[key_of(r)] = r
    return tuple(wanted[k] for k in sorted(wanted))


def refs_to_check(
    containers: Iterable[ContainerRecord],
    created_from: Mapping[str, str],
    local: LocalImages,
    all_tags: bool = False,
) -> tuple[Reference, ...]:
    """The tags worth a registry request: those with a registry digest to compare with."""
    wanted: dict[TagKey, Reference] = {}
    for c in containers:
        ref = tag_ref(created_from.get(c.id, c.image))
        if ref is None:
            continue
        base = local.by_tag.get(key_of(ref)) or local.by_id.get(c.image_id)
        if _digests(base, ref.name):
            wanted[key_of(ref)] = ref
    if all_tags:
        for image, _, ref in local.tags:
            if _digests(image, ref.name):
                wanted[key_of(ref)] = ref
    return tuple(wanted[k] for k in sorted(wanted))


def container_status(
    container: ContainerRecord,
    created_from: str,
    local: LocalImages,
    checks: Mapping[TagKey, TagCheck],
    known: Mapping[TagKey, TagCheck] | None = None,
) -> str:
    ref = tag_ref(created_from)
    if ref is None:
        # pinned by digest (it can't be updated by tag) or created from an image ID
        return LOCAL if created_from else UNKNOWN
    tagged = local.by_tag.get(key_of(ref))
    base = tagged or local.by_id.get(container.image_id)
    digests = _digests(base, ref.name)
    if base is None:
        return UNKNOWN
    if not digests:
        return LOCAL
    check = checks.get(key_of(ref))
    if _needs_digest_check(base, ref, check):
        has = _registry_has(base, ref, known or {})
        if has is False:
            return LOCAL  # the containerd store's own digest, never pushed or pulled
        if has is None:
            return UNKNOWN
    if check is None or not check.digest:
        return UNKNOWN
    if check.digest not in digests:
        return PULL
    if tagged is not None and tagged.id != container.image_id:
        return RECREATE
    return CURRENT


def build_updates(
    now: float,
    containers: Iterable[ContainerRecord],
    created_from: Mapping[str, str],
    images: Iterable[ImageRecord],
    checks: Mapping[TagKey, TagCheck],
    stats: Mapping[str, RegistryStats],
    known: Mapping[TagKey, TagCheck] | None = None,
) -> UpdatesSnapshot:
    """``known``: the registry's answers for the local digests of ``digests_to_check``."""
    known = known or {}
    local = LocalImages(images)
    statuses = tuple(
        sorted(
            (
                ContainerUpdate(
                    c.name,
                    container_status(c, created_from.get(c.id, c.image), local, checks, known),
                )
                for c in containers
            ),
            key=lambda u: u.name,
        )
    )
    image_updates: dict[tuple[str, str], ImageUpdate] = {}
    for image, text, ref in local.tags:
        check = checks.get(key_of(ref))
        digests = _digests(image, ref.name)
        if check is None or not check.digest or not digests:
            continue  # absent while unknown
        if _needs_digest_check(image, ref, check) and _registry_has(image, ref, known) is not True:
            continue  # built here (the containerd store's own digest), or unknown
        update = ImageUpdate(_short(image.id), text, check.digest not in digests)
        image_updates[(update.image_id, update.tag)] = update
    outcomes = []
    for registry in sorted({k[0] for k in checks}):
        ok = all(c.digest for k, c in checks.items() if k[0] == registry)
        outcomes.append(
            RegistryOutcome(registry, ok, stats.get(registry, RegistryStats(None, None, {}, None)))
        )
    return UpdatesSnapshot(
        now,
        statuses,
        tuple(image_updates[k] for k in sorted(image_updates)),
        tuple(outcomes),
    )
