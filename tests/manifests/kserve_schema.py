"""A strict structural check of KServe objects against the SDK's own generated API models.

kubernetes-validate has no schema for custom resources; the kserve SDK ships its CRDs' OpenAPI
types as Python models (``kserve.models.V1beta1InferenceService`` ...: ``openapi_types`` and
``attribute_map``), and the Kubernetes client the core types they refer to. Every key must be
a field of its type and every value of that field's type; an unknown field is a problem (the
API server would drop or refuse it).
"""

from __future__ import annotations

import re
from typing import Any

_PRIMITIVES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "bool": (bool,),
    "float": (int, float),
    "datetime": (str,),
    "date": (str,),
    # Kubernetes quantities: "500m", "2", 4
    "ResourceQuantity": (str, int, float),
}


def _model_class(name: str) -> Any:
    import kubernetes.client.models as k8s

    from ppminilm.compat.kserve import kserve

    for module in (kserve.models, k8s):
        cls = getattr(module, name, None)
        if cls is not None:
            return cls
    return None


def problems(value: Any, type_name: str, where: str = "") -> list[str]:
    """What in ``value`` does not fit the OpenAPI type ``type_name`` (empty: it fits)."""
    if type_name == "object":
        return []
    match = re.fullmatch(r"list\[(.+)\]", type_name)
    if match:
        if not isinstance(value, list):
            return [f"{where}: expected a list, got {type(value).__name__}"]
        return [
            p for i, item in enumerate(value) for p in problems(item, match[1], f"{where}[{i}]")
        ]
    match = re.fullmatch(r"dict\((\w+), (.+)\)", type_name)
    if match:
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {type(value).__name__}"]
        return [p for k, v in value.items() for p in problems(v, match[2], f"{where}.{k}")]
    if type_name in _PRIMITIVES:
        kinds = _PRIMITIVES[type_name]
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            return [f"{where}: expected {type_name}, got {value!r:.40}"]
        return []
    cls = _model_class(type_name)
    if cls is None:
        return [f"{where}: unknown type {type_name}"]
    if not isinstance(value, dict):
        return [f"{where}: expected a {type_name} object, got {type(value).__name__}"]
    fields = {json_key: cls.openapi_types[attr] for attr, json_key in cls.attribute_map.items()}
    out = []
    for key, item in value.items():
        if key not in fields:
            out.append(f"{where}.{key}: not a field of {type_name}")
        else:
            out.extend(problems(item, fields[key], f"{where}.{key}"))
    return out


def object_problems(obj: dict[str, Any]) -> list[str]:
    """:func:`problems` of one KServe object, by its kind and apiVersion."""
    kinds = {
        ("serving.kserve.io/v1beta1", "InferenceService"): "V1beta1InferenceService",
        ("serving.kserve.io/v1alpha1", "ServingRuntime"): "V1alpha1ServingRuntime",
    }
    type_name = kinds.get((obj.get("apiVersion"), obj.get("kind")))
    if type_name is None:
        return [f"{obj.get('apiVersion')}/{obj.get('kind')}: not a KServe kind this checks"]
    return problems(obj, type_name, obj["kind"])
