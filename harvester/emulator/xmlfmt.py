"""REST (XML) rendering of API responses, the inverse of Flickr's documented XML→JSON mapping.

Scalars become attributes, `{"_content": x}` a text child, lists repeated children, dicts child
elements; the layout (declaration, tabs, ` />`) copies the recorded responses byte for byte.
"""

from __future__ import annotations

from typing import Any

_DECL = '<?xml version="1.0" encoding="utf-8" ?>\n'


def _esc(value: Any) -> str:
    if isinstance(value, bool):
        value = int(value)
    s = str(value)
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return s.replace('"', "&quot;").replace("'", "&#039;")


def _text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _element(name: str, body: dict[str, Any], depth: int) -> str:
    tabs = "\t" * depth
    attrs = "".join(
        f' {k}="{_esc(v)}"'
        for k, v in body.items()
        if v is not None and not isinstance(v, dict | list) and k != "_content"
    )
    children = [_child(k, v, depth + 1) for k, v in body.items() if isinstance(v, dict | list)]
    content = body.get("_content")
    if content is not None and not children:
        return f"{tabs}<{name}{attrs}>{_text(str(content))}</{name}>\n"
    if not children:
        return f"{tabs}<{name}{attrs} />\n"
    return f"{tabs}<{name}{attrs}>\n{''.join(children)}{tabs}</{name}>\n"


def _child(name: str, value: dict[str, Any] | list[Any], depth: int) -> str:
    if isinstance(value, list):
        return "".join(_child(name, v, depth) if isinstance(v, dict) else "" for v in value)
    if set(value) == {"_content"}:
        tabs = "\t" * depth
        text = str(value["_content"])
        return f"{tabs}<{name}>{_text(text)}</{name}>\n" if text else f"{tabs}<{name} />\n"
    return _element(name, value, depth)


def ok(payload: dict[str, Any]) -> bytes:
    """`<rsp stat="ok">` around the payload's top-level elements."""
    inner = "".join(
        _child(k, v, 0) if isinstance(v, dict | list) else "" for k, v in payload.items()
    )
    return f'{_DECL}<rsp stat="ok">\n{inner}</rsp>\n'.encode()


def fail(code: int, message: str) -> bytes:
    """The error envelope exactly as Flickr writes it."""
    err = f'\t<err code="{code}" msg="{_esc(message)}" />\n'
    return f'{_DECL}<rsp stat="fail">\n{err}</rsp>\n'.encode()
