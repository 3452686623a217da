"""Every workaround of the paddle / paddlenlp / paddleslim stack, one module per library.

=====================================================  ==============================
trap                                                   handled in
=====================================================  ==============================
``import zlib`` must precede ``import paddle``          :mod:`ppminilm.compat.paddle`
saved ``.pdmodel`` parsed without static-mode state     :mod:`ppminilm.compat.paddle`
paddleslim 2.6 ``SuperLayerNorm`` old op signature      :mod:`ppminilm.compat.paddleslim`
OFA needs the DynaBERT forward patches                  :mod:`ppminilm.compat.paddleslim`
paddle 3.x breaks paddleslim 2.6 OFA (refused early)    :mod:`ppminilm.compat.paddleslim`
``quant_post_static`` needs a static ``DataLoader``     :mod:`ppminilm.compat.paddleslim`
PTQ ``avg`` crashes on 0-D tensors                      :mod:`ppminilm.compat.paddleslim`
paddlenlp logs every tokenizer load at INFO, in colour   :mod:`ppminilm.compat.paddlenlp`
PTQ logs each phase and draws 3 bars per candidate      :mod:`ppminilm.compat.paddleslim`
OpenVINO Cores released out of order leave a freed      ``ppminilm.inference.engines.openvino``
alternate signal stack (next SIGTERM is a SIGSEGV)      ``.shared_core``
=====================================================  ==============================

Importing this package imports no paddle; :mod:`ppminilm.compat.versions` is paddle-free too.
"""
