import os
import sys

# Tests share 2 cores with ONNX Runtime; keep XLA from oversubscribing.
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true")
sys.path.insert(0, os.path.dirname(__file__))
