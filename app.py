"""The matting web app: ``python app.py`` serves it on http://127.0.0.1:7860 with the embedded model.

    python app.py                              # local only, language from the browser
    python app.py --lang zh --port 8080
    python app.py --host 0.0.0.0 --auth alice:secret
    MATTING_AUTH=alice:secret python app.py --share

``python app.py --help`` lists every flag. The work is in demo/launch.py (installed with pip, ``matting-app``
runs the same).
"""

import sys

from demo.launch import build_parser, host_warning, main, parse_auth, port_problem, share_warning  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
