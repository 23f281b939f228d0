"""What demo/app.py and its Space call: canvas preprocessing, redrawn test digits, the Hugging Face Hub."""

REQUEST_THREADS = 1  # torch threads per request: the app serves two requests at once on a 2-core CPU, one thread
# each (its models are tiny); lab/tools/bench.py times the classify path on as many
