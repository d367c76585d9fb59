"""The local web app (``neurochange serve``): curation of studies, runs and results over a project folder.

:mod:`~neurochange.serve.project` (the folder and its safe paths), :mod:`~neurochange.serve.jobs`
(background runs), :mod:`~neurochange.serve.api` (JSON endpoints), :mod:`~neurochange.serve.app`
(the app, its pages and files). Pages and script: ``resources/web``.
"""
