"""gunicorn's settings for running the web processes without `connector serve`:

    gunicorn -c gunicorn.conf.py "connector:create_app()"

They are the ones `connector serve` uses, read from the same environment (PORT, CONNECTOR_HOST,
CONNECTOR_WORKERS, CONNECTOR_THREADS, ALLMYSMS_READ_TIMEOUT, CONNECTOR_REQUEST_READ_TIMEOUT,
CONNECTOR_SHUTDOWN_GRACE): workers
from the CPU count, each request read whole before a thread takes it (so slow clients cannot hold the
threads), timeouts above AllMySMS's, an access log with inbound tokens masked and no query strings, metrics of every
worker summed at /metrics (PROMETHEUS_MULTIPROC_DIR, by default a folder of /dev/shm), and on SIGTERM no
new connection taken while those held are answered, within the grace. Deliveries
are not made here: run `connector worker` beside it.
"""

# gunicorn reads every module-level name that is one of its settings ("config" is): hence these names.
from connector.config import load as load_settings
from connector.observe.metrics import prepare_directory
from connector.ops.serving import gunicorn_options

_settings = load_settings()
prepare_directory(_settings["CONNECTOR_DATA_DIR"])  # before the workers fork: they inherit it
globals().update(gunicorn_options(_settings))
