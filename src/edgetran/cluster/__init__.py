"""From a laptop to a lab: edgetran's jobs on a Dask cluster (shared infrastructure).

* :class:`ClusterOptions` and :func:`open_cluster`: connect to a scheduler (``tcp://``,
  ``tls://``) or start ``local:N`` worker processes here, on 127.0.0.1.
* :class:`Cluster`: routes profiling jobs to the workers offering their device (one job at a
  time per device) and trainings to GPU workers, and waits for results with a time limit.
* :func:`start_worker`, :func:`start_scheduler` (``edgetran worker``, ``edgetran scheduler``)
  and :func:`slurm_job_script` (workers as SLURM jobs, through dask-jobqueue).

The host rule: a profile runs alone on its host, trainings share a host with each other but
never with a profile (:mod:`edgetran.cluster.hostlock`).

Importing this package imports no Dask module: ``distributed`` (the ``lab`` extra) is imported
where a connection or a server is made.
"""

from edgetran.cluster.client import Cluster, open_cluster
from edgetran.cluster.options import (
    GPU_RESOURCE,
    ClusterOptions,
    device_resource,
    parse_scheduler,
    worker_device,
)
from edgetran.cluster.serve import detect_gpus, start_scheduler, start_worker
from edgetran.cluster.slurm import slurm_job_script
from edgetran.errors import ClusterError, JobTimeoutError

__all__ = [
    "GPU_RESOURCE",
    "Cluster",
    "ClusterError",
    "ClusterOptions",
    "JobTimeoutError",
    "detect_gpus",
    "device_resource",
    "open_cluster",
    "parse_scheduler",
    "slurm_job_script",
    "start_scheduler",
    "start_worker",
    "worker_device",
]
