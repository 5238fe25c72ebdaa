"""Options for the raft tests: `--seed N` runs (and traces) one simulation seed."""


def pytest_addoption(parser):
    parser.addoption("--seed", action="store", default=None, type=int,
                     help="raft simulation: run only this seed, with an event trace")
