"""YAML config files with ``file:line`` errors, and the models every config shares.

Subclass :class:`ConfigModel` for a new kind of config and load it with :func:`load_config`.
Builds on ``_core``; the Letta adapter and the batch runner build on it.
"""

from __future__ import annotations

from ._config import AgentConfig as AgentConfig
from ._config import BlockSpec as BlockSpec
from ._config import ConfigModel as ConfigModel
from ._config import FanOutSettings as FanOutSettings
from ._config import LettaConnection as LettaConnection
from ._config import PanelConfig as PanelConfig
from ._config import load_config as load_config
from ._config import load_panel as load_panel
from ._config import load_yaml as load_yaml
from ._config import parse_yaml as parse_yaml

__all__ = [
    "AgentConfig",
    "BlockSpec",
    "ConfigModel",
    "FanOutSettings",
    "LettaConnection",
    "PanelConfig",
    "load_config",
    "load_panel",
    "load_yaml",
    "parse_yaml",
]
