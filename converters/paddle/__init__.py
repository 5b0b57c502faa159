"""PaddlePaddle families (PaddleClas/PaddleX classification, PP-OCR): one module per family, each
registering its models at import. Readers live in converters/io/paddle.py and never import paddle."""
