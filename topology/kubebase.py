"""The common ground of the Kubernetes schemas: the strict base model, `metadata`, and the
fields every object has (`apiVersion`, `kind`, `metadata`).  See `topology.kubeschema`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from topology.fields import (
    Annotations,
    DNSLabel,
    Ignored,
    Labels,
    StrictModel,
)

ProtocolName = Literal["TCP", "UDP", "SCTP"]


class KubeStrictModel(StrictModel):
    """Base of the Kubernetes models: strict, and a null value is the field's zero value."""

    @model_validator(mode="before")
    @classmethod
    def _null_is_unset(cls, data: Any) -> Any:
        if isinstance(data, dict) and None in data.values():
            # Only fields of the model: an unknown key stays an error, null or not.
            known = {info.alias or name for name, info in cls.model_fields.items()}
            return {k: v for k, v in data.items() if v is not None or k not in known}
        return data


class ObjectMeta(KubeStrictModel):
    name: str = Field(
        description="Object name (a DNS-1123 subdomain; a DNS-1123 label for Namespace, Service and workloads)."
    )  # its syntax depends on the kind (checked in normalize)
    namespace: DNSLabel | None = Field(
        default=None,
        description="Namespace (default: default); Namespace objects have none.",
    )
    labels: Labels = Field(
        default={},
        description="Labels, as selectors of Services and NetworkPolicies see them.",
    )
    annotations: Annotations = Field(
        default={},
        description="Accepted (at most 256 KiB); no effect on the dataplane.",
    )
    generate_name: Ignored = None
    uid: Ignored = None
    resource_version: Ignored = None
    generation: Ignored = None
    creation_timestamp: Ignored = None
    deletion_timestamp: Ignored = None
    deletion_grace_period_seconds: Ignored = None
    owner_references: Ignored = None
    finalizers: Ignored = None
    managed_fields: Ignored = None
    self_link: Ignored = None


class ObjectBase(KubeStrictModel):
    api_version: str | None = Field(
        default=None, description="May be left out; when given it must match the kind."
    )
    kind: str
    metadata: ObjectMeta = Field(description="Name, namespace and labels.")
