"""`kcore etcd`: placeholder until the store lands."""
def run(argv):
    raise SystemExit("not yet")
