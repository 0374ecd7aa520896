"""Voice in: the host's microphone from the console, on air (pass-through) or in conversation.

``mic`` places a console's stream on the program clock; ``passthrough`` puts the moderator's voice on
air at a fixed delay; ``vad`` and ``turns`` find where speech starts and where a turn ends; ``echo``
tells the program's own sound coming back from the room from a person speaking; ``asr`` holds the
speech recognisers; ``listener`` ties them to the director and the chat log.
"""
