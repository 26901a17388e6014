"""`stream model ...`: inspect the registry and switch learning, as an operator would.

freeze/resume/reset set a switch in the registry that the learner reads before each
batch, and are published on control.v1 (who, what, when) so every change is on record.
"""

from __future__ import annotations

import argparse
import getpass
import json
import time
import uuid

from stream.adapters.kafka import producer
from stream.adapters.registry import ModelRegistry
from stream.config import Settings
from stream.errors import StreamError
from stream.serde import SchemaRegistry
from stream.stack import endpoints


def _registry(settings: Settings) -> tuple[ModelRegistry, SchemaRegistry, str]:
    bootstrap, redis_url = endpoints(settings)
    serde = SchemaRegistry(settings.paths.schemas_dir)
    return ModelRegistry(redis_url, settings.model.hmac_key, serde, settings.redis.key_prefix), serde, bootstrap


def _control(serde: SchemaRegistry, bootstrap: str, name: str, action: str, version: int | None = None) -> None:
    cmd = {"command_id": uuid.uuid4().hex, "model_name": name, "action": action, "version": version, "args": {},
           "issued_at": int(time.time() * 1000), "issued_by": getpass.getuser()}
    p = producer(bootstrap)
    p.produce("control.v1", serde.encode("ControlCommand", cmd), key=name.encode())
    if p.flush(10):
        raise StreamError("control.v1: the command was not delivered within 10s")


def cmd_model(args: argparse.Namespace, settings: Settings) -> int:
    name = args.name or settings.model.name
    reg, serde, bootstrap = _registry(settings)
    try:
        if args.model_command == "list":
            releases = reg.versions(name)
            if not releases:
                print(f"no releases of model {name!r} yet")
            latest = reg.latest(name)
            for r in releases:
                mark = "*" if latest and r["version"] == latest["version"] else " "
                m = r["metrics"]
                print(f"{mark} v{r['version']:<4} parent={r['parent_version'] or '-':<4} "
                      f"examples={r['examples_seen']:<8} log_loss={m.get('log_loss', 0):.3f} "
                      f"auc={m.get('auc', 0):.3f} ctr={m.get('ctr', 0):.3f} "
                      f"created={time.strftime('%H:%M:%S', time.localtime(r['created'] / 1000))}")
            state = "frozen" if reg.flag(name, "frozen") else "learning"
            print(f"model {name}: {len(releases)} release(s), {state}")
            return 0
        if args.model_command == "show":
            r = reg.release_record(name, args.version)
            if r is None:
                raise StreamError(f"model {name!r} has no version {args.version}")
            model = reg.load(r)  # also proves the blob's integrity
            print(json.dumps({**r, "weights": {k: round(v, 6) for k, v in dict(model.weights).items()},
                              "intercept": model.intercept}, indent=2))
            return 0
        action = args.model_command.upper()
        if action == "FREEZE":
            reg.set_flag(name, "frozen", True)
        elif action == "RESUME":
            reg.set_flag(name, "frozen", False)
        elif action == "RESET":
            reg.set_flag(name, "reset", True)
        _control(serde, bootstrap, name, action)
        what = {"FREEZE": "learning frozen: the learner keeps scoring its metrics but stops updating",
                "RESUME": "learning resumed", "RESET": "reset requested: the learner starts a fresh version"}
        print(f"model {name}: {what[action]} (published on control.v1)")
        return 0
    finally:
        reg.close()


def add_parser(sub: argparse._SubParsersAction) -> None:
    mp = sub.add_parser("model", help="inspect model versions; freeze, resume or reset learning",
                        description="Inspect the model registry and switch online learning.")
    mp.add_argument("--name", default=None, help="model name (default: model.name)")
    msub = mp.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    msub.add_parser("list", help="every released version with its metrics", description="List releases.")
    sp = msub.add_parser("show", help="one version: release record, weights", description="Show one release.")
    sp.add_argument("version", type=int)
    for action, text in (("freeze", "stop learning (scoring goes on with the last release)"),
                         ("resume", "restart learning"), ("reset", "start a fresh model version")):
        msub.add_parser(action, help=text, description=text)
    mp.set_defaults(handler=cmd_model)
