"""The MONAI Label REST API on top of the review server, so 3D Slicer's MONAI Label module (and other MONAI Label
clients) can open a medannot project.

One MONAI Label "app" is one medannot project, at the base URL ``http://HOST:PORT/monailabel/PROJECT`` (the
project's name, URL-quoted, or its id). Under that base the MONAI Label paths answer as MONAI Label's own server
does (``/info/``, ``/infer/{model}``, ``/datastore/...``, ``/activelearning/{strategy}``, ``/train/``,
``/auth/...``), mapped onto medannot's objects:

=====================================  ==============================================================================
MONAI Label                            medannot
=====================================  ==============================================================================
app (``/info/``)                       a project: its name, label map, model, trainer, strategies; the caller's role
image id                               a case id (``"12"``); the image is the stored NIfTI of the case
label tag ``original``                 the case's latest version (the model's proposal or the latest edit)
label tag ``final``                    the case's latest version made by a person (edit, accepted, reopened)
``PUT /datastore/label``               a new ``edit`` version (the mask is checked on the case grid and re-encoded)
``POST /infer/{model}``                what proposes for the project (its active version, else its base model) on the
                                       case (its stored proposal when that model made one), returned as a label
                                       NIfTI; nothing is stored
``POST /activelearning/{strategy}``    the next ``pending`` case in the strategy's order (``project``: the project's
                                       active-learning order), opened (``in_review``)
``POST /train/{model}``                a training round of the learning loop, queued (project admins); ``GET /train/``
                                       reports it as MONAI Label's task
user / token / roles                   medannot accounts and bearer tokens; roles per project (see :mod:`.service`)
=====================================  ==============================================================================

:mod:`.service` holds the mapping (queries, label maps, the model run); :mod:`.routes` the HTTP side (auth, info, infer,
active learning, training), with :mod:`.datastore` (images and labels) and :mod:`.access` (caller, project, role).
"""
