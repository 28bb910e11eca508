"""Mitogen's linear strategy, from the `mitogen` package pinned in requirements.txt.

Ansible's linear strategy (task by task, every host in step) with Mitogen's connections: one Python interpreter per
host and become user for the whole run, modules run inside it, instead of a new `ssh` or `docker exec` and a new
Python for every task (figures in bench/README.md).

ansible.cfg selects it (`strategy = mitogen_linear`); `ANSIBLE_STRATEGY=linear` runs stock Ansible instead, with
the same results. Mitogen takes over the `ssh`, `docker` and `local` connections; a connection it does not know
(named by its full collection name, e.g. `community.docker.docker`) runs as in stock Ansible.

One correction to Mitogen 0.3.54 on ansible-core 2.21: it reads connection variables (`ansible_user`,
`ansible_ssh_common_args`, ...) from the task's variables without rendering them
(https://github.com/mitogen-hq/mitogen/issues/1083), so `ansible_user: "{{ production_ssh_user }}"` became the
literal user name `{{ production_ssh_user }}`. Both inventories build these values from other variables; they are
rendered here, with the task's variables, as stock Ansible renders them.
"""

from __future__ import annotations

from typing import Any

from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar
from ansible_mitogen import transport_config
from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule

__all__ = ["StrategyModule"]

_connection_option = transport_config.PlayContextSpec._connection_option


def _rendered_connection_option(self: Any, name: str, fallback_attr: str | None = None) -> Any:
    value = _connection_option(self, name, fallback_attr)
    templar = Templar(loader=DataLoader(), variables=self._task_vars)
    return templar.template(value) if templar.is_template(value) else value


transport_config.PlayContextSpec._connection_option = _rendered_connection_option
