"""Stage of ``workflow/rules/selection.smk``: each method's run chosen on the selection sample."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def select_run(stats: list[str], selection: str, rule: str, forget_set_id: str) -> None:
    """Every method's chosen run on forget set ``forget_set_id`` (``stats``: one ``stats.csv`` per candidate run,
    each naming its method and run), as the JSON document ``selection``."""
    from ..selection import choose, selection_json
    from ..storage import write_text

    chosen = choose(stats, rule)
    for method, c in chosen.items():
        log.info("%s on forget set %s: run %s, epoch %d (%s %.4g on the selection sample, of %d candidates)",
                 method, forget_set_id, c["run"], c["epoch"], rule, c["selection_value"], c["n_candidates"])
    write_text(selection, selection_json(chosen, forget_set_id, rule))
