"""Parameters are declared once, from a config dataclass, and filled from the ROS parameter
server (which reads the YAML given with `--ros-args --params-file`)."""
import dataclasses
import math
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
    values = {}
    for field in dataclasses.fields(config_cls):
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            raise TypeError(f'{config_cls.__name__}.{field.name} needs a default to be a parameter')
        name = prefix + field.name
        doc = field.metadata.get('doc', '')
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
