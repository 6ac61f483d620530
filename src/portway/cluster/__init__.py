"""The manager <-> worker protocol, shared by both sides (neither imports the other).

All calls travel on port 8080 of the callee (HTTPS when configured, ``transport``); each call and
each answer is signed with the cluster secret, the answer bound to the call's request id
(``signing``):
- deploy (push):      manager -> worker  POST /_portway/deploy            {"revision": N}
- retrieval (pull):   worker -> manager  GET  /_portway/cluster/environments/{env}/revisions/{N}
- status reporting:   worker -> manager  POST /_portway/cluster/workers/{id}/status
                      (the answer carries the desired revision, so polling converges a missed push)
- health check:       manager -> worker  GET  /_portway/status (signed;
                      /_portway/health is the plain load-balancer probe, it reveals nothing)
"""
