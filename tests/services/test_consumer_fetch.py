"""The worker's consumer fetch wait comes from the settings, not Faust's fixed 1.5 s."""

import asyncio

import faust
import pytest

from services.worker.consumer_fetch import FAUST_FETCH_MAX_WAIT_MS, fetch_max_wait_ms, set_fetch_max_wait


def _worker_consumer(app: faust.App):
    """The aiokafka consumer the app's worker would start (made, not started; the app keeps none)."""

    async def make():
        async def nothing(*_):
            return None

        consumer = app.transport.Consumer(app.transport, callback=nothing, on_partitions_revoked=nothing,
                                          on_partitions_assigned=nothing, loop=asyncio.get_running_loop())
        made = consumer._thread._create_worker_consumer(app.transport)
        await made.stop()  # never started: this only closes it
        return made

    return asyncio.run(make())


def test_faust_alone_waits_1500_ms():
    # the reason the setting exists; if Faust changes this, services/consumer_fetch.py may go
    app = faust.App("fetch-test-plain", broker="kafka://127.0.0.1:1", autodiscover=False, web_enabled=False)
    assert _worker_consumer(app)._fetch_max_wait_ms == FAUST_FETCH_MAX_WAIT_MS == fetch_max_wait_ms(app) == 1500


@pytest.mark.parametrize("wait_ms", [1, 100, 500])
def test_the_worker_consumer_waits_what_is_set(wait_ms):
    app = faust.App(f"fetch-test-{wait_ms}", broker="kafka://127.0.0.1:1", autodiscover=False, web_enabled=False)
    set_fetch_max_wait(app, wait_ms)
    consumer = _worker_consumer(app)
    assert consumer._fetch_max_wait_ms == wait_ms == fetch_max_wait_ms(app)
    assert consumer._group_id == f"fetch-test-{wait_ms}"  # still Faust's own consumer, settings and all


def test_too_late_once_the_consumer_is_made():
    app = faust.App("fetch-test-late", broker="kafka://127.0.0.1:1", autodiscover=False, web_enabled=False)
    asyncio.run(asyncio.sleep(0))
    _ = app.consumer
    with pytest.raises(RuntimeError, match="made already"):
        set_fetch_max_wait(app, 100)


def test_the_worker_app_uses_the_setting(tmp_path):
    from services.settings import Settings
    from services.worker.faust_app import build_app

    settings = Settings(data_dir=tmp_path)
    app = build_app(settings, sensors=False)
    assert _worker_consumer(app)._fetch_max_wait_ms == settings.consumer_fetch_max_wait_ms == 100
    app = build_app(Settings(data_dir=tmp_path, consumer_fetch_max_wait_ms=250), sensors=False)
    assert _worker_consumer(app)._fetch_max_wait_ms == 250
