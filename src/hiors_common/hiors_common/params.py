"""Parameters are declared once, from a config dataclass, and filled from the ROS parameter
server (which reads the YAML given with `--ros-args --params-file`).

A field's doc is its `field(metadata={'doc': ...})`, else the comment on its line or the comment
lines right above it in the class source (`field_docs`); the same text goes into the ROS parameter
descriptor (`ros2 param describe`) and into `hiors args <node>`.
"""
import ast
import dataclasses
import inspect
import io
import math
import textwrap
import tokenize
import typing

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import ParameterUninitializedException


def declare_config(node, config_cls, prefix: str = ''):
    """Declare every field of `config_cls` as a node parameter (default = field default) and
    return an instance filled with the parameter values.

    Lists must be homogeneous (ROS parameter arrays); empty-list defaults are typed from the
    field annotation. Nested dataclasses are not supported: keep node configs flat.
    """
    hints = typing.get_type_hints(config_cls)
    docs = field_docs(config_cls)
    values = {}
    for field in dataclasses.fields(config_cls):
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            raise TypeError(f'{config_cls.__name__}.{field.name} needs a default to be a parameter')
        name = prefix + field.name
        doc = docs[field.name]
        if isinstance(default, (list, tuple)) and len(default) == 0:
            from rclpy.parameter import Parameter
            arg = typing.get_args(hints[field.name])
            ptype = {str: Parameter.Type.STRING_ARRAY, float: Parameter.Type.DOUBLE_ARRAY,
                     int: Parameter.Type.INTEGER_ARRAY, bool: Parameter.Type.BOOL_ARRAY}[arg[0]]
            node.declare_parameter(name, ptype, ParameterDescriptor(description=doc))
            try:
                value = node.get_parameter(name).value
            except ParameterUninitializedException:
                value = None   # YAML `[]` carries no element type: keep the empty default
            values[field.name] = list(value) if value is not None else []
            continue
        if isinstance(default, tuple):
            default = list(default)
        # Floats accept integer YAML values ("rate_hz: 20"); converted below.
        descriptor = ParameterDescriptor(description=doc, dynamic_typing=isinstance(default, float))
        node.declare_parameter(name, default, descriptor)
        value = node.get_parameter(name).value
        if isinstance(default, float):
            if isinstance(value, str):
                value = _number_from_text(value)   # ROS reads `3e-4` (no dot) as a string
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                raise TypeError(f'parameter {name!r} must be a number, got {value!r}')
            value = float(value)
        if isinstance(value, (list, tuple)) or hasattr(value, 'tolist'):
            value = list(value)
        values[field.name] = value
    return config_cls(**values)


def _number_from_text(text: str):
    """'3e-4' -> 0.0003; anything that is not a finite number comes back unchanged."""
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


def field_default(field: dataclasses.Field):
    """The default of a config field (default_factory called); MISSING if it has none."""
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def field_docs(config_cls) -> dict[str, str]:
    """name -> doc for every field of a config dataclass: metadata['doc'], else the field's source
    comment; a field a subclass re-declares without a doc keeps the doc of the class it overrides."""
    comments = {}
    docs = {}
    for field in dataclasses.fields(config_cls):
        doc = ''
        for klass in config_cls.__mro__:
            if field.name not in klass.__dict__.get('__annotations__', {}):
                continue                      # not declared here
            own = klass.__dict__.get('__dataclass_fields__', {}).get(field.name)
            doc = own.metadata.get('doc', '') if own is not None else ''
            if not doc:
                if klass not in comments:
                    comments[klass] = _source_comments(klass)
                doc = comments[klass].get(field.name, '')
            if doc:
                break
        docs[field.name] = doc
    return docs


def _source_comments(klass) -> dict[str, str]:
    """Field name -> its comment in the class body: trailing comments on the field's lines, else
    the block of comment lines directly above it. {} when the source cannot be read."""
    try:
        source = textwrap.dedent(inspect.getsource(klass))
        tree = ast.parse(source)
        line_comments = {tok.start[0]: tok.string.lstrip('#').strip()
                         for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                         if tok.type == tokenize.COMMENT}
    except (OSError, TypeError, SyntaxError, tokenize.TokenError):
        return {}
    lines = source.splitlines()
    out = {}
    for stmt in tree.body[0].body:
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        trailing = [line_comments[n] for n in range(stmt.lineno, stmt.end_lineno + 1)
                    if n in line_comments and not lines[n - 1].lstrip().startswith('#')]
        above = []
        n = stmt.lineno - 1
        while n >= 1 and lines[n - 1].lstrip().startswith('#'):
            above.insert(0, line_comments.get(n, ''))
            n -= 1
        text = ' '.join(trailing or above).strip()
        if text:
            out[stmt.target.id] = text
    return out
