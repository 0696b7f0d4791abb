"""An attempt of a training started by the dispatcher on the reservation the queue pass
made: its container created on the chosen node (launcher.py) with the job document, and
the checkpoint to resume from, put into the user's home; a start that fails frees the
reservation and requeues the training (or gives up after ``max_attempts``).
"""

from __future__ import annotations

from typing import IO

from gpupool.container import DATASETS_ROOT, build_container
from gpupool.job import job_document
from gpupool.launcher import create_and_start, prepare_node
from gpupool.pool.ledger import Reservation
from gpupool.pool.state import describe_shares

from . import launch
from .context import DispatchContext
from .settling import Settler
from .store import Training


class AttemptStarter:
    """Starts an attempt on its reservation; a start that fails is settled by the settler."""

    def __init__(self, ctx: DispatchContext, settler: Settler):
        self.ctx = ctx
        self.settler = settler

    async def start(self, t: Training, res: Reservation) -> None:
        node = self.ctx.catalog.node(res.node)
        spec = self.ctx.catalog.spec(t.spec)
        image = next((i for i in self.ctx.catalog.images if i.name == t.image), None)
        body = t.body
        dataset = next((d for d in self.ctx.catalog.datasets if d.name == t.dataset), None)
        try:
            if node is None or spec is None or image is None:
                raise RuntimeError("its node, spec or image is no longer in the catalog")
            if t.dataset and dataset is None:
                raise RuntimeError(f"dataset {t.dataset!r} is no longer in the catalog")
            ckpt = self.ctx.checkpoint(t.id)
            resume = t.checkpoint_epoch if ckpt is not None else None
            dropped = await self.ctx.run(self.ctx.store.roll_back, t.id, resume or 0)
            job = job_document(
                training_id=t.id,
                name=t.name,
                graph=body.get("graph"),
                command=body.get("command"),
                dataset=(
                    {
                        "name": dataset.name,
                        "path": f"{DATASETS_ROOT}/{dataset.name}",
                        "format": dataset.format,
                    }
                    if dataset
                    else None
                ),
                hyper=body["hyperparameters"],
                processes=t.processes,
                attempt=t.attempt,
            )
            # the home mounted only if its label says it is the owner's (owners.py)
            home = await prepare_node(self.ctx.engines, node, t.owner)
            plan = build_container(
                user=t.owner,
                server=t.id,
                spec=spec,
                image=image,
                node=node,
                reservation_id=res.id,
                gpus=res.gpus,
                hub_env={},
                port=res.port or 0,
                command=launch.command(t.id, t.processes),
                cache_root=self.ctx.hami_cache_root,
                datasets=(dataset,) if dataset else (),
                kind="training",
                name=launch.training_container_name(t.id, t.attempt),
                extra_labels={"io.gpupool.training": t.id, "io.gpupool.attempt": str(t.attempt)},
                read_only_datasets=True,
                home=home,
            )

            def job_files(f: IO[bytes]) -> None:
                if ckpt is not None:
                    with ckpt.open("rb") as src:
                        launch.job_archive(t.id, job, f, (ckpt.name, src, ckpt.stat().st_size))
                else:
                    launch.job_archive(t.id, job, f)

            # a container of this name left by an earlier try is removed only if it is this
            # training's owner's
            await create_and_start(
                self.ctx.engines,
                node,
                plan,
                t.owner,
                labels={"kind": "training"},
                home_files=job_files,
            )
        except Exception as e:
            why = f"could not start on {res.node}: {e}"
            self.ctx.log.warning("training %s: %s", t.id, why)
            if node is not None:  # what this try may have made
                await self.settler.remove(
                    node, launch.training_container_name(t.id, t.attempt), t.owner
                )
            await self.ctx.run(self.ctx.ledger.release, res.id, f"training {t.id}: {why}"[:255])
            await self.settler.requeue_or_fail(t, why)
            return
        await self.ctx.run(
            self.ctx.store.add_attempt,
            t.id,
            t.attempt,
            node=node.name,
            reservation_id=res.id,
            container=plan.name,
        )
        changed = await self.ctx.run(
            self.ctx.store.update,
            t.id,
            only_from=["starting"],
            state="running",
            message=f"running on {node.name}, {describe_shares(res.gpus, spec.gpu_sm_percent)}",
        )
        await self.ctx.event(
            t,
            "dispatched",
            node=node.name,
            gpus=[g.to_json() for g in res.gpus],
            resume_epoch=resume,
            rolled_back=dropped,
        )
        self.ctx.log.info(
            "training %s (attempt %d) runs on %s%s",
            t.id,
            t.attempt,
            node.name,
            f", resuming after epoch {resume}" if resume else "",
        )
        if not changed:  # cancelled while starting: the next watch stops it
            self.ctx.wake()
