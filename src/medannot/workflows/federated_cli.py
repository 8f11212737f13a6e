"""``medannot federated server | client | simulate``: federated training with Flower from the command line.

Registered on the main Typer app by :mod:`medannot.cli` (as the server's commands are); only Typer is imported
here at start-up, Flower and the training code inside the commands.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer

from medannot.errors import ConfigError

__all__ = ["register"]

_STRATEGY = "fedavg (weighted mean by case count) or fedprox (adds a proximal term on the sites, for uneven sites)."


def _settings(rounds: int, local_epochs: int, strategy: str, mu: float, sites: int, dp_noise: float, dp_clip: float) -> Any:
    from medannot.training.federated import FederatedSettings, Strategy

    return FederatedSettings(rounds=rounds, local_epochs=local_epochs, strategy=Strategy.parse(strategy), proximal_mu=mu, min_sites=sites,
                             dp_noise=dp_noise, dp_clip=dp_clip)


def _overrides(pairs: list[str]) -> dict[str, Any] | None:
    """``--set key=value`` pairs; values read as JSON when they parse (numbers, lists), else kept as text."""
    import json

    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out or None


def _run(config: Path, val: Optional[Path], out: Optional[Path], set_: list[str], settings: Any) -> Any:
    from medannot.training.federated import FederatedRun
    from medannot.workflows.federated import registry_binding, require_flower, server_config

    require_flower()
    if not config.is_file():
        raise ConfigError(f"{config}: no such config file")
    if val is not None and not val.is_dir():
        raise ConfigError(f"{val}: no such folder; --val takes a dataset folder of held-out labelled cases")
    return FederatedRun(server_config(config, val=val, out=out, overrides=_overrides(set_)), registry_binding(), settings)


def _read(path: Optional[Path], what: str) -> bytes | None:
    if path is None:
        return None
    if not path.is_file():
        raise ConfigError(f"{path}: no such {what} file")
    return path.read_bytes()


def register(app: typer.Typer, friendly_errors: Callable[[Any], Any]) -> None:
    """Add the ``federated`` sub-app (``server``, ``client``, ``simulate``) to ``app``."""
    fed = typer.Typer(name="federated", no_args_is_help=True, help="Federated training with Flower: sites train on their own data and "
                      "exchange only model weights; the server ships the bundle.")
    app.add_typer(fed, name="federated")

    @fed.command("server")
    @friendly_errors
    def server(
        config: Path = typer.Argument(..., help="Training config, e.g. configs/federated-nuclei.yaml (sent to the sites each round)."),
        val: Optional[Path] = typer.Option(None, "--val", help="Dataset folder of held-out labelled cases the shared weights are scored on."),
        address: str = typer.Option("127.0.0.1:8080", "--address", help="HOST:PORT to listen on."),
        sites: int = typer.Option(2, "--sites", min=1, help="Sites that take part in every round (the server waits for them)."),
        rounds: int = typer.Option(5, "--rounds", min=1, help="Rounds of (send weights, train locally, average)."),
        local_epochs: int = typer.Option(1, "--local-epochs", min=1, help="Epochs each site trains per round."),
        strategy: str = typer.Option("fedavg", "--strategy", help=_STRATEGY),
        mu: float = typer.Option(0.01, "--proximal-mu", min=0.0, help="FedProx's mu."),
        dp_noise: float = typer.Option(0.0, "--dp-noise", min=0.0, help="Central DP (Flower, server-side fixed clipping): noise multiplier; 0 = off."),
        dp_clip: float = typer.Option(1.0, "--dp-clip", help="Central DP: L2 norm each site's update is clipped to."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Bundle folder (default: the config's out)."),
        set_: list[str] = typer.Option([], "--set", help="Override a config field: key=value (dotted keys allowed)."),
        ca: Optional[Path] = typer.Option(None, "--ca", help="TLS: CA certificate (PEM); with --cert and --key."),
        cert: Optional[Path] = typer.Option(None, "--cert", help="TLS: server certificate (PEM)."),
        key: Optional[Path] = typer.Option(None, "--key", help="TLS: server private key (PEM)."),
    ) -> None:
        """Wait for --sites sites, run the rounds, then write the bundle (its card records rounds, sites and strategy)."""
        from medannot.training.federated import serve

        ca_pem, cert_pem, key_pem = _read(ca, "CA certificate"), _read(cert, "certificate"), _read(key, "private key")
        certificates = None
        if ca_pem is not None and cert_pem is not None and key_pem is not None:
            certificates = (ca_pem, cert_pem, key_pem)
        elif ca_pem is not None or cert_pem is not None or key_pem is not None:
            raise ConfigError("TLS needs all three of --ca, --cert and --key")
        run = _run(config, val, out, set_, _settings(rounds, local_epochs, strategy, mu, sites, dp_noise, dp_clip))
        bundle = serve(run, address, certificates)
        typer.echo(f"bundle written: {bundle}")

    @fed.command("client")
    @friendly_errors
    def client(
        data: Path = typer.Option(..., "--data", help="This site's dataset folder (dataset.json, imagesTr/, labelsTr/); it never leaves the site."),
        server: str = typer.Option("127.0.0.1:8080", "--server", help="The server's HOST:PORT."),
        name: Optional[str] = typer.Option(None, "--name", help="This site's name in the server's record (default: the data folder's name)."),
        audit: Optional[Path] = typer.Option(None, "--audit", help="Write every message this site sends into this folder (bytes and a summary)."),
        ca: Optional[Path] = typer.Option(None, "--ca", help="TLS: the server's CA certificate (PEM)."),
        wait: float = typer.Option(600.0, "--wait", min=0.0, help="Seconds to keep trying to reach the server."),
    ) -> None:
        """Join a federated run as one site: train the weights the server sends on --data, send back only weights."""
        from medannot.training.federated import join
        from medannot.workflows.federated import registry_binding, require_flower

        require_flower()
        join(registry_binding(), data, name or data.resolve().name, server, _read(ca, "CA certificate"), audit, wait)
        typer.echo("the server ended the run")

    @fed.command("simulate")
    @friendly_errors
    def simulate(
        config: Path = typer.Argument(..., help="Training config, e.g. configs/federated-nuclei.yaml."),
        site: list[Path] = typer.Option(..., "--site", help="A simulated site's dataset folder (repeat: one per site)."),
        val: Optional[Path] = typer.Option(None, "--val", help="Dataset folder of held-out labelled cases."),
        rounds: int = typer.Option(5, "--rounds", min=1),
        local_epochs: int = typer.Option(1, "--local-epochs", min=1),
        strategy: str = typer.Option("fedavg", "--strategy", help=_STRATEGY),
        mu: float = typer.Option(0.01, "--proximal-mu", min=0.0),
        dp_noise: float = typer.Option(0.0, "--dp-noise", min=0.0),
        dp_clip: float = typer.Option(1.0, "--dp-clip"),
        out: Optional[Path] = typer.Option(None, "--out", "-o"),
        set_: list[str] = typer.Option([], "--set"),
        audit: Optional[Path] = typer.Option(None, "--audit", help="Write every message the sites send into this folder."),
        cpus: int = typer.Option(2, "--cpus", min=1, help="CPUs the simulation may use (one per site at a time)."),
    ) -> None:
        """Run every site on this machine with Flower's simulation engine (Ray), then write the bundle."""
        from medannot.training.federated import simulate as run_simulation

        run = _run(config, val, out, set_, _settings(rounds, local_epochs, strategy, mu, len(site), dp_noise, dp_clip))
        bundle = run_simulation(run, [(p.resolve().name, p) for p in site], audit=audit, cpus=cpus)
        typer.echo(f"bundle written: {bundle}")
