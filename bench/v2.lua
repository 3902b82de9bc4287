-- wrk script for the local-runtime benchmark (bench/tensors.py): POSTs one V2 (Open Inference
-- Protocol) JSON request. The body comes from the environment variable BENCH_BODY, so one
-- script serves every model (Iris [1,4] FP32, the MLP's [1,256] FP32).
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or error("set BENCH_BODY to the request body")
wrk.headers["Content-Type"] = "application/json"
