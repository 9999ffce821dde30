"""Wake-word voice commands: openWakeWord detection, a transcriber as second stage, command capture with
Silero VAD, tolerant command matching with slots, and actions. `edge-asr listen` runs it all.

  detector   WakeWordDetector: openWakeWord heads over one streaming front end; thresholds, patience,
             refractory period, pre-roll RingBuffer
  verify     the second stage (`verify(audio) -> bool`) and local transcription for commands
  capture    CommandRecorder: record a command until the speaker stops
  grammar    command phrases with {slots}, matched tolerantly
  actions    run a program (argv, never a shell), POST JSON, or only emit
  listener   the loop that ties them together and yields JSON-ready events
  evaluate   recall / false accepts per hour / latency over a threshold sweep (`edge-asr wakeword eval`)
"""
