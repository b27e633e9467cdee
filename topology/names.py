"""Syntax of Kubernetes and Linux names, as the API server and the kernel check them.

Each check returns None when the value is valid, else the reason, worded for an error message
(the wording of k8s.io/apimachinery/pkg/util/validation, shortened).  Pure and doctested.
"""

from __future__ import annotations

import re

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?\Z")
_DNS1123_SUBDOMAIN = re.compile(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z"
)
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]\Z")
_SVC_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?\Z")
_DNS_LABEL = r"[A-Za-z0-9_]([-A-Za-z0-9_]*[A-Za-z0-9_])?"
_DNS_NAME = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*\.?\Z")

IFNAMSIZ = 16  # include/uapi/linux/if.h: names are at most 15 bytes plus the NUL


def dns1123_label(value: str) -> str | None:
    """RFC 1123 label: namespaces, container names, most short names.

    >>> dns1123_label("web-1") is None
    True
    >>> dns1123_label("Web")  # doctest: +ELLIPSIS
    "'Web' is not a valid name (lowercase letters, digits and '-', starting and ending ...)"
    """
    if len(value) <= 63 and _DNS1123_LABEL.match(value):
        return None
    return (
        f"{value!r} is not a valid name (lowercase letters, digits and '-', starting and"
        " ending with a letter or digit, at most 63 characters)"
    )


def dns1035_label(value: str) -> str | None:
    """RFC 1035 label: Service names (they become DNS labels and must start with a letter).

    >>> dns1035_label("web") is None
    True
    >>> dns1035_label("1web") is not None
    True
    """
    if len(value) <= 63 and _DNS1035_LABEL.match(value):
        return None
    return (
        f"{value!r} is not a valid name (lowercase letters, digits and '-', starting with a"
        " letter and ending with a letter or digit, at most 63 characters)"
    )


def dns1123_subdomain(value: str) -> str | None:
    """RFC 1123 subdomain: Pod, workload, NetworkPolicy and node names.

    >>> dns1123_subdomain("httpd-deployment.v1") is None
    True
    >>> dns1123_subdomain("a_b") is not None
    True
    """
    if len(value) <= 253 and _DNS1123_SUBDOMAIN.match(value):
        return None
    return (
        f"{value!r} is not a valid name (lowercase letters, digits, '-' and '.', starting"
        " and ending with a letter or digit, at most 253 characters)"
    )


def label_key(key: str) -> str | None:
    """A label (or annotation) key: an optional DNS subdomain prefix and `/`, then a name.

    >>> label_key("app") is None
    True
    >>> label_key("kubernetes.io/metadata.name") is None
    True
    >>> label_key("-app")  # doctest: +ELLIPSIS
    "'-app' is not a valid label key (an optional DNS subdomain prefix and '/', then ...)"
    """
    prefix, slash, name = key.rpartition("/")
    valid = len(name) <= 63 and _QUALIFIED_NAME.match(name) is not None
    if slash and (not prefix or dns1123_subdomain(prefix) is not None):
        valid = False
    if valid:
        return None
    return (
        f"{key!r} is not a valid label key (an optional DNS subdomain prefix and '/', then"
        " up to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or"
        " digit)"
    )


def label_value(value: str) -> str | None:
    """A label value: empty, or up to 63 characters like a label key's name part.

    >>> label_value("") is None
    True
    >>> label_value("v1.2_beta") is None
    True
    >>> label_value("a/b") is not None
    True
    """
    if value == "" or (len(value) <= 63 and _QUALIFIED_NAME.match(value)):
        return None
    return (
        f"{value!r} is not a valid label value (empty, or up to 63 letters, digits, '-',"
        " '_' or '.', starting and ending with a letter or digit)"
    )


def port_name(value: str) -> str | None:
    """An IANA_SVC_NAME (RFC 6335): the name of a containerPort or a Service port.

    >>> port_name("http") is None
    True
    >>> port_name("dns-tcp") is None
    True
    >>> port_name("8080")  # doctest: +ELLIPSIS
    "'8080' is not a valid port name (at most 15 lowercase letters, digits and '-', ...)"
    """
    if (
        0 < len(value) <= 15
        and _SVC_NAME.match(value)
        and "--" not in value
        and any(c.isalpha() for c in value)
    ):
        return None
    return (
        f"{value!r} is not a valid port name (at most 15 lowercase letters, digits and '-',"
        " with at least one letter, no '--', not starting or ending with '-')"
    )


def ifname(value: str) -> str | None:
    """A Linux interface name (net/core/dev.c `dev_valid_name`).

    >>> ifname("cbr0") is None
    True
    >>> ifname("a-very-long-bridge-name")  # doctest: +ELLIPSIS
    "'a-very-long-bridge-name' is not a valid interface name (1-15 characters, ...)"
    """
    if (
        0 < len(value.encode()) < IFNAMSIZ
        and value not in (".", "..")
        and not any(c in "/:" or c.isspace() for c in value)
    ):
        return None
    return (
        f"{value!r} is not a valid interface name (1-15 characters, no '/', ':' or"
        " whitespace, not '.' or '..')"
    )


def dns_name(value: str) -> str | None:
    """A DNS name as a probe may ask kube-dns for (`web`, `web.default.svc.cluster.local`).

    >>> dns_name("web.default") is None
    True
    >>> dns_name("web..default") is not None
    True
    """
    if 0 < len(value) <= 253 and _DNS_NAME.match(value):
        return None
    return f"{value!r} is not a valid DNS name"
