"""`stream model ...`: inspect the registry and switch learning, as an operator would.

freeze/resume/reset set a switch in the registry that the learner reads before each
batch, and are published on control.v1 (who, what, when) so every change is on record.
Rollout commands travel on control.v1 to the learner, which answers on alerts.v1 (the
transitions, or a refusal with its reason); the command waits for that answer (bounded,
``--timeout``; ``--no-wait`` to skip) and exits 1 with the learner's reason if refused.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
import uuid

from stream.adapters.kafka import Answers, producer
from stream.adapters.registry import ModelRegistry
from stream.cliargs import count, number
from stream.config import Settings
from stream.core.rollout import RolloutError, parse_steps
from stream.errors import StreamError
from stream.serde import SchemaRegistry
from stream.stack import bootstrap_servers, redis_url


def _registry(settings: Settings) -> tuple[ModelRegistry, SchemaRegistry]:
    """The registry in Redis (list, show and status read only it: they need no broker)."""
    serde = SchemaRegistry(settings.paths.schemas_dir)
    return ModelRegistry(redis_url(settings), settings.model.hmac_key, serde, settings.redis.key_prefix), serde


def publish_control(serde: SchemaRegistry, bootstrap: str, name: str, action: str, version: int | None = None,
             args: dict[str, str] | None = None) -> str:
    """Send one ControlCommand; returns its command_id."""
    cmd = {"command_id": uuid.uuid4().hex, "model_name": name, "action": action, "version": version,
           "args": args or {},
           "issued_at": int(time.time() * 1000), "issued_by": getpass.getuser()}
    p = producer(bootstrap)
    p.produce("control.v1", serde.encode("ControlCommand", cmd), key=name.encode())
    if p.flush(10):
        raise StreamError("control.v1: the command was not delivered within 10s")
    return cmd["command_id"]


def cmd_model(args: argparse.Namespace, settings: Settings) -> int:
    name = args.name or settings.model.name
    reg, serde = _registry(settings)
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
        if args.model_command == "status":
            return _status(reg, name, settings)
        if args.model_command in ROLLOUT_COMMANDS:
            return _rollout_command(args, reg, serde, bootstrap_servers(settings), name)
        action = args.model_command.upper()
        if action == "FREEZE":
            reg.set_flag(name, "frozen", True)
        elif action == "RESUME":
            reg.set_flag(name, "frozen", False)
        elif action == "RESET":
            reg.set_flag(name, "reset", True)
        publish_control(serde, bootstrap_servers(settings), name, action)
        what = {"FREEZE": "learning frozen: the learner keeps scoring its metrics but stops updating",
                "RESUME": "learning resumed", "RESET": "reset requested: the learner starts a fresh version"}
        print(f"model {name}: {what[action]} (published on control.v1)")
        return 0
    finally:
        reg.close()


#: CLI action -> (ControlCommand action, help)
ROLLOUT_COMMANDS = {
    "shadow": ("SHADOW", "score with VERSION next to the champion; its lists go only to recommendations.shadow.v1"),
    "canary": ("CANARY", "serve VERSION (or the shadow challenger) to a share of users, ramped in steps"),
    "advance": ("SET_CANARY", "move the canary to its next step now (the operator's confirmation in manual mode)"),
    "promote": ("PROMOTE", "give the challenger all traffic now; the old champion stays warm as blue"),
    "switch": ("SWITCH", "blue-green: all traffic to the other version at once (again to switch back)"),
    "rollback": ("ROLLBACK", "drop the challenger (or switch back to blue after a promotion)"),
}


def _rollout_command(args: argparse.Namespace, reg: ModelRegistry, serde: SchemaRegistry, bootstrap: str,
                     name: str) -> int:
    action, _ = ROLLOUT_COMMANDS[args.model_command]
    version = getattr(args, "version", None)
    if version is not None and reg.release_record(name, version) is None:
        raise StreamError(f"model {name!r} has no version {version} (see `stream model list`)")
    extra = {}
    if getattr(args, "steps", None):
        extra["steps"] = args.steps
    if getattr(args, "reason", None):
        extra["reason"] = args.reason
    what = f"{args.model_command}{f' v{version}' if version is not None else ''}"
    if args.no_wait:
        publish_control(serde, bootstrap, name, action, version, extra)
        print(f"model {name}: {what} published on control.v1 (not waiting: `stream model status` shows whether "
              f"the learner applied it)")
        return 0
    answers = Answers(bootstrap, "alerts.v1")  # opened first: the answer cannot slip past
    try:
        command_id = publish_control(serde, bootstrap, name, action, version, extra)
        print(f"model {name}: {what} published on control.v1; waiting up to {args.timeout:g}s for the learner's "
              f"answer on alerts.v1", file=sys.stderr, flush=True)

        def answers_it(raw: bytes) -> bool:
            try:
                return serde.decode("Alert", raw)["evidence"].get("command_id") == command_id
            except StreamError:
                return False
        got = [serde.decode("Alert", raw) for raw in answers.wait(answers_it, args.timeout)]
    finally:
        answers.close()
    if not got:
        raise StreamError(f"no answer from the learner within {args.timeout:g}s: is a learner running "
                          f"(`stream worker --stages learn`)? The command stays on control.v1 and is applied when "
                          f"a learner reads it; `stream model status` shows the state")
    refused = [a for a in got if a["name"] == "rollout.refused"]
    if refused:
        raise StreamError(f"the learner refused {what}: {refused[0]['message']}")
    print(f"model {name}: {what} applied by the learner: " + "; ".join(a["message"] for a in got))
    return 0


def _status(reg: ModelRegistry, name: str, settings: Settings) -> int:
    state = reg.rollout(name)
    latest = reg.latest(name)
    if state is None:
        print(f"model {name}: no rollout state yet (the learner creates it); latest release "
              f"{'v' + str(latest['version']) if latest else 'none'}")
        return 0
    ch = reg.pointer(name, "challenger")
    print(f"model {name}: mode {state['mode']}, automation {state['automation']}")
    print(f"  champion   v{state['champion']} (serving v{latest['version'] if latest else '?'}) "
          f"share {1 - state['share']:.0%}")
    if state.get("challenger") is not None:
        print(f"  challenger v{state['challenger']} (serving v{ch['version'] if ch else '?'}) share {state['share']:.0%}"
              f"{' (shadow: scored, never served)' if state['mode'] == 'shadow' else ''}")
    if state.get("blue") is not None:
        print(f"  blue       v{state['blue']} (kept warm for an instant switch back)")
    if state["mode"] == "canary":
        steps = ", ".join(f"{s:.0%}" for s in state["steps"])
        print(f"  steps      {steps}; at step {state['step'] + 1}: {state['windows_in_step']} window(s), "
              f"{state['examples_in_step']} challenger examples; worse streak {state['worse_streak']}")
    d = state.get("last_decision")
    if d:
        print(f"  last decision: {d.get('decision')}: {d.get('reason')}")
        ev = d.get("evidence") or {}
        if ev:
            print("    " + " ".join(f"{k}={v}" for k, v in sorted(ev.items())))
    refusal = reg.meta(name, "rollout_last_refusal")
    if refusal:
        r = json.loads(refusal)
        print(f"  last refusal: {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(r['at'] / 1000))} "
              f"{r['action']} by {r['issued_by']}: {r['message']}")
    if state.get("pending"):
        print(f"  PENDING (manual mode): the analysis recommends {state['pending']}; confirm with "
              f"`stream model {'advance' if state['pending'] == 'step' else state['pending']}`")
    return 0


def _steps(raw: str) -> str:
    """``--steps`` checked where it is parsed (and published as given)."""
    try:
        parse_steps(raw)
    except RolloutError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return raw


def add_parser(sub: argparse._SubParsersAction) -> None:
    mp = sub.add_parser("model", help="inspect model versions; freeze, resume or reset learning",
                        description="Inspect the model registry and switch online learning.")
    mp.add_argument("--name", default=None, help="model name (default: model.name)")
    msub = mp.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    msub.add_parser("list", help="every released version with its metrics", description="List releases.")
    sp = msub.add_parser("show", help="one version: release record, weights", description="Show one release.")
    sp.add_argument("version", type=count(0))
    for action, text in (("freeze", "stop learning (scoring goes on with the last release)"),
                         ("resume", "restart learning"), ("reset", "start a fresh model version")):
        msub.add_parser(action, help=text, description=text)
    msub.add_parser("status", help="rollout: variants, traffic shares, last decision, automation",
                    description="Show the rollout state the learner keeps in the registry.")
    for action, (_, text) in ROLLOUT_COMMANDS.items():
        sp = msub.add_parser(action, help=text, description=text + ". Travels on control.v1.")
        if action in ("shadow", "canary"):
            sp.add_argument("version", type=count(0), nargs="?" if action == "canary" else None,
                            help="registry version" + (" (default: the shadow challenger)" if action == "canary" else ""))
        if action == "canary":
            sp.add_argument("--steps", type=_steps, default=None, help="traffic shares, e.g. 0.05,0.1,0.25,0.5,1.0 (default: rollout.steps)")
        if action == "rollback":
            sp.add_argument("--reason", default=None, help="why (recorded in the alert)")
        sp.add_argument("--timeout", type=number(0, 3600, low_open=True), default=30.0,
                        help="seconds to wait for the learner's answer (default 30)")
        sp.add_argument("--no-wait", action="store_true", help="publish the command and return at once")
    mp.set_defaults(handler=cmd_model)
