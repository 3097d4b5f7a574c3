"""Many threads opening one fresh database together: the first uses after a start."""

import threading

from services.sqlite_wal import open_wal


def test_concurrent_first_opens_of_a_fresh_file_all_succeed_in_wal_mode(tmp_path):
    for round_ in range(20):
        path = tmp_path / f"round{round_}" / "db.sqlite3"
        start = threading.Barrier(12)
        modes, errors = [], []

        def use(start=start, path=path, modes=modes, errors=errors) -> None:
            start.wait()
            try:
                conn, mode = open_wal(path, busy_timeout_s=10.0)
                conn.execute("CREATE TABLE IF NOT EXISTS t (x)")
                conn.execute("INSERT INTO t VALUES (1)")
                conn.close()
                modes.append(mode)
            except Exception as exc:  # noqa: BLE001 - the test reports every failure
                errors.append(exc)

        threads = [threading.Thread(target=use) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [] and modes == ["wal"] * 12
        conn, _ = open_wal(path, busy_timeout_s=1.0)
        assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 12
        conn.close()
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
