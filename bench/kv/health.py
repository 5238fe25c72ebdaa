"""Is a member serving, and what does it say about itself.

Health is what `etcdctl endpoint health` checks: a linearizable Range of key
`health` answers (an empty answer is fine). Status (version, leader, db size)
is read when the server implements Maintenance.Status and left out if not.
"""
from __future__ import annotations


def probe_member(endpoint: str, timeout_s: float = 2.0) -> tuple[bool, dict]:
    """(healthy, info); info has `error` when unhealthy, status fields when known."""
    import grpc

    from kcore.store.rpc.pb import rpc_pb2, rpc_pb2_grpc

    with grpc.insecure_channel(endpoint) as ch:
        try:
            rpc_pb2_grpc.KVStub(ch).Range(rpc_pb2.RangeRequest(key=b"health"), timeout=timeout_s)
        except grpc.RpcError as exc:
            return False, {"error": f"{exc.code().name}: {exc.details()}"}
        info: dict = {"endpoint": endpoint}
        try:
            st = rpc_pb2_grpc.MaintenanceStub(ch).Status(rpc_pb2.StatusRequest(),
                                                        timeout=timeout_s)
            info.update(version=st.version, member_id=f"{st.header.member_id:x}",
                        leader=f"{st.leader:x}", is_leader=st.leader == st.header.member_id,
                        db_size=st.dbSize, raft_index=st.raftIndex)
        except grpc.RpcError as exc:
            info["status_error"] = exc.code().name
        return True, info
