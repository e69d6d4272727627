"""The local room: Apache Kafka run from Maven's jars (kafka.py) and the stack of processes that
`yingji run`, the end-to-end tests and the benchmarks start (stack.py)."""
