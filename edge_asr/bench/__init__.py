"""`edge-asr bench`: accuracy, speed, memory and size of models beside their peers.

data.py (manifests, non-speech clips) -> runner.py (each system in its own worker.py process)
-> scoring.py -> report.py; card.py writes the numbers back into a model directory's card.
Nothing is imported here, so a worker process carries only what its own system needs.
"""
