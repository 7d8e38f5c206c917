"""Mitogen's linear strategy for the molecule scenarios (.config/molecule/config.yml).

Ansible starts a fresh Python for every task on every host; Mitogen keeps one interpreter
per host and sends it the modules, which cuts the CPU a converge takes on the lab's two
cores several times over. Mitogen accelerates the ``docker`` transport by its short name
only, while molecule's Docker driver names it ``community.docker.docker``: this strategy
maps that name to ``docker`` before Mitogen looks at it. Nothing else changes: the same
playbooks and modules run; without the ``mitogen`` package (or with
FLASKFLEET_MITOGEN=0, see the Makefile) the scenarios run on Ansible's own strategy.
"""

import ansible.playbook.play_context
import ansible_mitogen.loaders
import ansible_mitogen.strategy

_SHORT_NAMES = {"community.docker.docker": "docker"}
_mitogen_get_with_context = ansible_mitogen.strategy.wrap_connection_loader__get_with_context


def _get_with_context(name, *args, **kwargs):
    if args and isinstance(args[0], ansible.playbook.play_context.PlayContext):
        play_context = args[0]
        play_context.connection = _SHORT_NAMES.get(play_context.connection, play_context.connection)
    return _mitogen_get_with_context(_SHORT_NAMES.get(name, name), *args, **kwargs)


# Mitogen installs its loader wrapper by this module-level name when the strategy starts.
ansible_mitogen.strategy.wrap_connection_loader__get_with_context = _get_with_context

_Linear = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)


class StrategyModule(ansible_mitogen.strategy.StrategyMixin, _Linear):
    pass
