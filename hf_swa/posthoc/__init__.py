"""Post-hoc averaging as an application: the ``hf-swa-average`` command, GLUE scoring for soups, the card section.

The averaging itself is in the core (:func:`hf_swa.average_checkpoints`, :func:`hf_swa.greedy_soup`);
this package adds what a command line user needs around it.
"""
