"""Run the fan-out job: python -m pushpipe.jobs.fanout"""
from pushpipe.jobs import runtime
from pushpipe.jobs.fanout import job

runtime.run(job.build, job.JOB)
