"""`scrapflow demo`: a realistic Guizhou network, and N lots driven through every step by the
domain services (the use cases the API calls), so that every report, indicator and anomaly has
figures to show.

The network (fictional enterprises at real GB/T 2260 county codes): recyclers with collection
points in all nine prefectures, an online recycling platform, an importer in the bonded zone, a
Chongqing recycler shipping in, pretreatment centres in six prefectures, two electrolytic
aluminium plants that alloy molten aluminium directly, a secondary aluminium smelter, a copper
smelter, processors in Guizhou and one in Guangdong, and the province's and prefectures'
authorities. N lots stand for a year of the province (1,000,000 lots are about 90,000 t of
scrap); capacities are scaled to N so that utilisation reads as for a year.

Lots move in waves: registered from sellers, trucked to pretreatment centres, weighed (small
differences, a few refusals and discrepancies), sorted, shredded or baled (a few runs lose more
than their process allows), shipped to the smelters, melted with primary metal, cast, shipped to
processors and certified. The last wave leaves some of everything behind: lots at every stage,
shipments in transit, refused lots, a voided run, a suspended recycler whose last load was still
received. Choices follow `--seed`; ids and times are the database's and the clock's."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import math
import multiprocessing
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from domain.actor import SYSTEM, Actor, PrincipalKind, Role
from domain.audit.service import Signer
from domain.base import utcnow
from domain.credits import service as credits
from domain.credits.rules import Method
from domain.identity import service as identity
from domain.lots import service as lots
from domain.lots.rules import (
    ConsumerClass,
    LotKind,
    Metal,
    Origin,
    resident_id_check_digit,
)
from domain.registry import service as registry
from domain.registry.models import Enterprise
from domain.registry.rules import USCC_CHARSET, FacilityKind, Status, uscc_check_character
from domain.shipments import service as shipments
from domain.shipments.rules import DiscrepancyStatus
from domain.transformations import service as transformations
from domain.transformations.rules import DestinationUse, LossKind, Process, ProductForm

Echo = Callable[[str], None]

WAVE_LOTS = 50_000  # lots registered per wave; every stage then runs over them
BATCH = 5_000  # the largest registration batch
COMMIT_LOTS = 5_000  # lots moved per committed transaction, roughly
TRUCK_G = 30_000_000  # a truck from a collection point: 30 t
TRUCK_LOTS = 400
BULK_LOTS = 500  # household purchases bulked into one bag or bale at a collection point
BULKED_APART = ("ISRI-TALC", "GB13587-VIII")  # cans and insulated cable are bulked apart
RUN_LOTS = 500  # lots a pretreatment run takes at most
CONVOY_G = 64_000_000  # graded scrap to a smelter: two trailers under one waybill
HEAT_SCRAP_G = {"electrolytic": 150_000_000, "secondary": 90_000_000, "copper": 60_000_000}
PRODUCT_LOT_G = 60_000_000  # a product lot: a day's deliveries to one customer, about 60 t
PRODUCT_SHIPMENT_LOTS = 3
YEAR_LOTS = 1_000_000  # the lots of a year: capacities are scaled against it


# --- the network ------------------------------------------------------------------------------

# County (GB/T 2260) → name and the county seat's coordinates.
COUNTIES: dict[str, tuple[str, float, float]] = {
    "520102": ("贵阳市南明区", 26.568, 106.714),
    "520103": ("贵阳市云岩区", 26.605, 106.724),
    "520111": ("贵阳市花溪区", 26.410, 106.670),
    "520113": ("贵阳市白云区", 26.678, 106.623),
    "520115": ("贵阳市观山湖区", 26.619, 106.626),
    "520123": ("贵阳市修文县", 26.838, 106.592),
    "520181": ("贵阳市清镇市", 26.556, 106.470),
    "520201": ("六盘水市钟山区", 26.577, 104.843),
    "520204": ("六盘水市水城区", 26.547, 104.957),
    "520281": ("六盘水市盘州市", 25.709, 104.471),
    "520302": ("遵义市红花岗区", 27.644, 106.894),
    "520303": ("遵义市汇川区", 27.750, 106.934),
    "520304": ("遵义市播州区", 27.536, 106.829),
    "520322": ("遵义市桐梓县", 28.133, 106.826),
    "520382": ("遵义市仁怀市", 27.792, 106.401),
    "520402": ("安顺市西秀区", 26.245, 105.966),
    "520403": ("安顺市平坝区", 26.406, 106.257),
    "520502": ("毕节市七星关区", 27.298, 105.305),
    "520526": ("毕节市威宁彝族回族苗族自治县", 26.857, 104.278),
    "520581": ("毕节市黔西市", 27.009, 106.032),
    "520602": ("铜仁市碧江区", 27.718, 109.192),
    "520603": ("铜仁市万山区", 27.518, 109.213),
    "520628": ("铜仁市松桃苗族自治县", 28.154, 109.203),
    "522301": ("黔西南州兴义市", 25.092, 104.895),
    "522302": ("黔西南州兴仁市", 25.435, 105.186),
    "522601": ("黔东南州凯里市", 26.583, 107.981),
    "522631": ("黔东南州黎平县", 26.230, 109.136),
    "522701": ("黔南州都匀市", 26.259, 107.518),
    "522702": ("黔南州福泉市", 26.686, 107.520),
    "522730": ("黔南州龙里县", 26.453, 106.979),
    "500113": ("重庆市巴南区", 29.402, 106.540),
    "440605": ("广东省佛山市南海区", 23.029, 113.143),
}

PREFECTURES = {
    "5201": "贵阳",
    "5202": "六盘水",
    "5203": "遵义",
    "5204": "安顺",
    "5205": "毕节",
    "5206": "铜仁",
    "5223": "黔西南",
    "5226": "黔东南",
    "5227": "黔南",
}
PLATE = {
    "5201": "贵A", "5202": "贵B", "5203": "贵C", "5206": "贵D", "5223": "贵E", "5205": "贵F",
    "5204": "贵G", "5226": "贵H", "5227": "贵J", "5001": "渝A", "4406": "粤E",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class EnterpriseSpec:
    key: str
    name: str
    roles: tuple[str, ...]
    region: str


@dataclass(frozen=True, slots=True)
class FacilitySpec:
    key: str
    enterprise: str
    name: str
    kind: FacilityKind
    region: str
    weight: float = 0.0  # collection points: their share of the lots
    online: float = 0.2  # collection points: share of lots bought through online pickup orders
    # Intake over capacity in a year (the designated over-capacity facilities above 1).
    load: float = 0.75
    imports: bool = False


ENTERPRISES = [
    EnterpriseSpec("rc-gy", "贵阳筑城再生资源回收有限公司", ("recycler",), "520102"),
    EnterpriseSpec("rc-online", "贵州黔回收网络科技有限公司", ("recycler",), "520115"),
    EnterpriseSpec("rc-lps", "六盘水凉都再生资源有限公司", ("recycler",), "520201"),
    EnterpriseSpec("rc-zy", "遵义红城再生资源回收有限公司", ("recycler",), "520302"),
    EnterpriseSpec("rc-as", "安顺黄果树再生资源有限公司", ("recycler",), "520402"),
    EnterpriseSpec("rc-bj", "毕节洪山再生资源回收有限公司", ("recycler",), "520502"),
    EnterpriseSpec("rc-wn", "威宁县乌撒废旧金属回收站", ("recycler",), "520526"),
    EnterpriseSpec("rc-tr", "铜仁梵净再生资源有限公司", ("recycler",), "520602"),
    EnterpriseSpec("rc-qxn", "黔西南金州再生资源有限公司", ("recycler",), "522301"),
    EnterpriseSpec("rc-qdn", "黔东南苗岭再生资源有限公司", ("recycler",), "522601"),
    EnterpriseSpec("rc-qn", "黔南剑江再生资源回收有限公司", ("recycler",), "522701"),
    EnterpriseSpec("rc-cq", "重庆巴南再生资源回收有限公司", ("recycler",), "500113"),
    EnterpriseSpec("im-gy", "贵州综保区再生金属进出口有限公司", ("importer", "recycler"), "520115"),
    EnterpriseSpec("pt-qz", "贵州黔中再生金属预处理有限公司", ("pretreater",), "520113"),
    EnterpriseSpec("pt-qb", "黔北再生金属分拣中心有限公司", ("pretreater",), "520303"),
    EnterpriseSpec("pt-qx", "黔西再生资源加工配送有限公司", ("pretreater",), "520201"),
    EnterpriseSpec("sm-qz", "贵州清镇铝业有限公司", ("smelter",), "520181"),
    EnterpriseSpec("sm-xr", "黔西南兴仁铝业有限公司", ("smelter",), "522302"),
    EnterpriseSpec("sm-zy", "遵义再生铝合金有限公司", ("smelter",), "520304"),
    EnterpriseSpec("sm-cu", "铜仁再生铜业有限公司", ("smelter",), "520603"),
    EnterpriseSpec("pr-wheel", "贵州清镇铝合金轮毂有限公司", ("processor",), "520181"),
    EnterpriseSpec("pr-profile", "贵阳白云铝型材有限公司", ("processor",), "520113"),
    EnterpriseSpec("pr-xr", "兴仁铝精深加工有限公司", ("processor",), "522302"),
    EnterpriseSpec("pr-diecast", "遵义汽车压铸件有限公司", ("processor",), "520303"),
    EnterpriseSpec("pr-cable", "安顺电线电缆有限公司", ("processor",), "520402"),
    EnterpriseSpec("pr-gd", "佛山南海铝材有限公司", ("processor",), "440605"),
    EnterpriseSpec("tp-qyt", "贵州黔运通物流有限公司", ("transporter",), "520115"),
    EnterpriseSpec("tp-green", "贵州绿色货运新能源物流有限公司", ("transporter",), "520113"),
]

CP = FacilityKind.collection_point
CENTRE = FacilityKind.pretreatment_center
SMELTER = FacilityKind.smelter
PLANT = FacilityKind.processing_plant

FACILITIES = [
    # Collection points: every prefecture, an online platform's pickup depots, the bonded zone.
    FacilitySpec("cp-gy-nanming", "rc-gy", "南明回收网点", CP, "520102", 6, load=1.15),
    FacilitySpec("cp-gy-baiyun", "rc-gy", "白云回收网点", CP, "520113", 5),
    FacilitySpec("cp-gy-huaxi", "rc-gy", "花溪回收网点", CP, "520111", 4),
    FacilitySpec("cp-gy-qingzhen", "rc-gy", "清镇回收网点", CP, "520181", 3),
    FacilitySpec("cp-ol-guanshanhu", "rc-online", "观山湖上门回收站", CP, "520115", 6, 0.85),
    FacilitySpec("cp-ol-yunyan", "rc-online", "云岩上门回收站", CP, "520103", 5, 0.85),
    FacilitySpec("cp-ol-huichuan", "rc-online", "汇川上门回收站", CP, "520303", 4, 0.85),
    FacilitySpec("cp-lps-zhongshan", "rc-lps", "钟山回收网点", CP, "520201", 4),
    FacilitySpec("cp-lps-panzhou", "rc-lps", "盘州回收网点", CP, "520281", 3),
    FacilitySpec("cp-lps-shuicheng", "rc-lps", "水城回收网点", CP, "520204", 2),
    FacilitySpec("cp-zy-honghuagang", "rc-zy", "红花岗回收网点", CP, "520302", 6),
    FacilitySpec("cp-zy-renhuai", "rc-zy", "仁怀回收网点", CP, "520382", 3),
    FacilitySpec("cp-zy-tongzi", "rc-zy", "桐梓回收网点", CP, "520322", 2),
    FacilitySpec("cp-as-xixiu", "rc-as", "西秀回收网点", CP, "520402", 3),
    FacilitySpec("cp-as-pingba", "rc-as", "平坝回收网点", CP, "520403", 2),
    FacilitySpec("cp-bj-qixingguan", "rc-bj", "七星关回收网点", CP, "520502", 4),
    FacilitySpec("cp-bj-qianxi", "rc-bj", "黔西回收网点", CP, "520581", 3),
    FacilitySpec("cp-wn-weining", "rc-wn", "威宁收购站", CP, "520526", 1, 0.0),
    FacilitySpec("cp-tr-bijiang", "rc-tr", "碧江回收网点", CP, "520602", 3),
    FacilitySpec("cp-tr-songtao", "rc-tr", "松桃回收网点", CP, "520628", 1.5),
    FacilitySpec("cp-qxn-xingyi", "rc-qxn", "兴义回收网点", CP, "522301", 3),
    FacilitySpec("cp-qxn-xingren", "rc-qxn", "兴仁回收网点", CP, "522302", 2),
    FacilitySpec("cp-qdn-kaili", "rc-qdn", "凯里回收网点", CP, "522601", 3),
    FacilitySpec("cp-qdn-liping", "rc-qdn", "黎平回收网点", CP, "522631", 1.5),
    FacilitySpec("cp-qn-duyun", "rc-qn", "都匀回收网点", CP, "522701", 3),
    FacilitySpec("cp-qn-fuquan", "rc-qn", "福泉回收网点", CP, "522702", 2),
    FacilitySpec("cp-cq-banan", "rc-cq", "巴南回收网点", CP, "500113", 3),
    FacilitySpec(
        "cp-im-bonded", "im-gy", "综保区进口再生原料监管仓", CP, "520115", 0.7, 0.0, imports=True
    ),
    # Pretreatment and distribution centres: six of the nine prefectures.
    FacilitySpec("c-baiyun", "pt-qz", "白云再生金属预处理中心", CENTRE, "520113"),
    FacilitySpec("c-xiuwen", "pt-qz", "修文再生金属分拣中心", CENTRE, "520123", load=0.6),
    FacilitySpec("c-longli", "pt-qz", "龙里再生金属预处理中心", CENTRE, "522730", load=1.3),
    FacilitySpec("c-huichuan", "pt-qb", "汇川再生金属分拣中心", CENTRE, "520303"),
    FacilitySpec("c-bijiang", "pt-qb", "碧江再生金属预处理中心", CENTRE, "520602", load=0.55),
    FacilitySpec("c-zhongshan", "pt-qx", "钟山再生金属预处理中心", CENTRE, "520201", load=0.85),
    FacilitySpec("c-xingren", "pt-qx", "兴仁再生金属预处理中心", CENTRE, "522302", load=0.65),
    # Smelters: two electrolytic plants alloying molten aluminium directly, secondary Al, copper.
    FacilitySpec("s-qingzhen", "sm-qz", "清镇电解铝及铝水合金化车间", SMELTER, "520181", load=0.8),
    FacilitySpec("s-xingren", "sm-xr", "兴仁电解铝厂", SMELTER, "522302", load=0.7),
    FacilitySpec("s-bozhou", "sm-zy", "播州再生铝合金厂", SMELTER, "520304", load=0.9),
    FacilitySpec("s-wanshan", "sm-cu", "万山再生铜冶炼厂", SMELTER, "520603", load=0.75),
    # Processors.
    FacilitySpec("p-wheel", "pr-wheel", "清镇轮毂工厂", PLANT, "520181"),
    FacilitySpec("p-profile", "pr-profile", "白云型材工厂", PLANT, "520113"),
    FacilitySpec("p-xingren", "pr-xr", "兴仁铝加工园区工厂", PLANT, "522302"),
    FacilitySpec("p-diecast", "pr-diecast", "汇川压铸工厂", PLANT, "520303"),
    FacilitySpec("p-cable", "pr-cable", "西秀线缆工厂", PLANT, "520402"),
    FacilitySpec("p-foshan", "pr-gd", "南海铝材工厂", PLANT, "440605"),
]

# Where each collection point trucks its lots (weights); the importer ships to smelters.
TO_CENTRE: dict[str, list[tuple[str, float]]] = {
    "5201": [("c-baiyun", 0.65), ("c-xiuwen", 0.35)],
    "5202": [("c-zhongshan", 1)],
    "5203": [("c-huichuan", 1)],
    "5204": [("c-xiuwen", 0.6), ("c-zhongshan", 0.4)],
    "5205": [("c-zhongshan", 0.5), ("c-xiuwen", 0.3), ("c-huichuan", 0.2)],
    "5206": [("c-bijiang", 1)],
    "5223": [("c-xingren", 1)],
    "5226": [("c-longli", 0.7), ("c-bijiang", 0.3)],
    "5227": [("c-longli", 1)],
    "5001": [("c-huichuan", 1)],
}
# Graded aluminium scrap from each centre to the smelters; copper all goes to Wanshan.
TO_SMELTER: dict[str, list[tuple[str, float]]] = {
    "c-baiyun": [("s-qingzhen", 0.55), ("s-bozhou", 0.45)],
    "c-xiuwen": [("s-qingzhen", 0.8), ("s-bozhou", 0.2)],
    "c-longli": [("s-qingzhen", 0.6), ("s-bozhou", 0.4)],
    "c-huichuan": [("s-bozhou", 0.8), ("s-qingzhen", 0.2)],
    "c-bijiang": [("s-bozhou", 0.7), ("s-qingzhen", 0.3)],
    "c-zhongshan": [("s-xingren", 0.6), ("s-qingzhen", 0.4)],
    "c-xingren": [("s-xingren", 0.9), ("s-bozhou", 0.1)],
    "cp-im-bonded": [("s-bozhou", 0.6), ("s-qingzhen", 0.4)],
}
COPPER_SMELTER = "s-wanshan"
SMELTER_TYPE = {
    "s-qingzhen": "electrolytic",
    "s-xingren": "electrolytic",
    "s-bozhou": "secondary",
    "s-wanshan": "copper",
}
DIRECT_ALLOYING = {"s-qingzhen": 0.96, "s-xingren": 0.84}  # share of molten lots alloyed directly
# Products: (smelter, form) → processors.
TO_PROCESSOR: dict[tuple[str, str], list[tuple[str, float]]] = {
    ("s-qingzhen", "molten"): [("p-wheel", 0.55), ("p-profile", 0.45)],
    ("s-qingzhen", "ingot"): [("p-foshan", 0.7), ("p-diecast", 0.3)],
    ("s-xingren", "molten"): [("p-xingren", 1)],
    ("s-xingren", "ingot"): [("p-foshan", 0.5), ("p-diecast", 0.5)],
    ("s-bozhou", "ingot"): [("p-diecast", 0.6), ("p-foshan", 0.4)],
    ("s-bozhou", "billet"): [("p-profile", 0.8), ("p-foshan", 0.2)],
    ("s-wanshan", "rod"): [("p-cable", 0.7), ("p-foshan", 0.3)],
    ("s-wanshan", "cathode"): [("p-cable", 1)],
}

# Scrap categories bought from sellers (weights), by metal and seller.
HOUSEHOLD = {
    Metal.aluminium: [("ISRI-TALC", 25), ("GB13586-WROUGHT", 22), ("GB13586-CAST", 20),
                      ("ISRI-TENSE", 8), ("ISRI-TALE", 5), ("GB13586-TURNINGS", 3)],
    Metal.copper: [("GB13587-VIII", 30), ("GB13587-I", 22), ("GB13587-II", 22),
                   ("GB13587-IV", 12), ("ISRI-BIRCH", 10), ("GB13587-III", 4)],
}  # fmt: skip
FACTORY = {  # pre-consumer offcuts, turnings and clips
    Metal.aluminium: [("GB13586-TURNINGS", 30), ("ISRI-TOUGH", 25), ("ISRI-TABOO", 15),
                      ("GB13586-WROUGHT", 20), ("ISRI-TEENS", 10)],
    Metal.copper: [("GB13587-V", 35), ("GB13587-I", 30), ("GB13587-VII", 20), ("ISRI-CANDY", 15)],
}  # fmt: skip
DEMOLITION = {  # post-consumer from businesses: buildings, vehicles, equipment
    Metal.aluminium: [("GB13586-CAST", 35), ("GB13586-WROUGHT", 30), ("ISRI-ZORBA", 20),
                      ("ISRI-TUTU", 15)],
    Metal.copper: [("GB13587-VIII", 40), ("GB13587-III", 25), ("ISRI-CLIFF", 20),
                   ("GB13587-IV", 15)],
}  # fmt: skip
IMPORTED = {
    Metal.aluminium: [("GB38472-SHREDDED", "GB/T 38472", 40),
                      ("GB38472-CASTINGS", "GB/T 38472", 20),
                      ("GB40382-WROUGHT", "GB/T 40382", 30),
                      ("GB40386-PURE", "GB/T 40386", 10)],
    Metal.copper: [("GB38471-CU", "GB/T 38471", 70), ("GB38470-CUALLOY", "GB/T 38470", 30)],
}  # fmt: skip
IMPORT_COUNTRIES = [("JP", 30), ("KR", 20), ("MY", 15), ("TH", 10), ("AU", 10), ("US", 10),
                    ("DE", 5)]  # fmt: skip
EXPORTERS = {
    "JP": "Nippon Metal Recycling K.K.", "KR": "Hanil Resources Co., Ltd.",
    "MY": "Klang Nonferrous Sdn. Bhd.", "TH": "Siam Alloy Recovery Co., Ltd.",
    "AU": "Pacific Scrap Metals Pty Ltd", "US": "Western Nonferrous Inc.",
    "DE": "Rhein Metallrecycling GmbH",
}  # fmt: skip

# Pretreatment: process weights, and the graded categories each makes.
PRETREATMENT = {
    Metal.aluminium: [(Process.sorting, 40), (Process.shredding, 30), (Process.baling, 15),
                      (Process.decoating, 10), (Process.drying, 5)],
    Metal.copper: [(Process.sorting, 45), (Process.splitting, 20), (Process.baling, 20),
                   (Process.shredding, 15)],
}  # fmt: skip
GRADES: dict[tuple[Metal, Process], list[str]] = {
    (Metal.aluminium, Process.sorting): ["GB13586-WROUGHT", "GB13586-CAST", "ISRI-TALC"],
    (Metal.aluminium, Process.shredding): ["GB13586-FRAGMENTS", "ISRI-TWITCH", "ISRI-ZORBA"],
    (Metal.aluminium, Process.baling): ["ISRI-TALDON", "ISRI-TAINT-TABOR"],
    (Metal.aluminium, Process.decoating): ["GB13586-FRAGMENTS", "ISRI-TALCRED"],
    (Metal.aluminium, Process.drying): ["ISRI-TEENS", "ISRI-TELIC"],
    (Metal.copper, Process.sorting): ["GB13587-I", "GB13587-II", "GB13587-III"],
    (Metal.copper, Process.splitting): ["ISRI-BARLEY", "ISRI-BERRY"],
    (Metal.copper, Process.baling): ["GB13587-VI", "ISRI-BIRCH"],
    (Metal.copper, Process.shredding): ["GB13587-VII", "ISRI-DREAM"],
}
LOSS_KINDS = {
    Process.sorting: [LossKind.non_metallic_residue, LossKind.other],
    Process.shredding: [LossKind.non_metallic_residue, LossKind.dust],
    Process.baling: [LossKind.other],
    Process.decoating: [LossKind.other, LossKind.dust],
    Process.drying: [LossKind.moisture],
    Process.bulking: [LossKind.moisture],
    Process.splitting: [LossKind.non_metallic_residue],
}
LOSS_LIMIT = {  # typical loss share: (low, high); the process threshold is higher
    Process.sorting: (0.01, 0.04),
    Process.shredding: (0.008, 0.025),
    Process.baling: (0.001, 0.008),
    Process.decoating: (0.03, 0.08),
    Process.drying: (0.04, 0.12),
    Process.splitting: (0.002, 0.008),
    Process.bulking: (0.0005, 0.003),
    Process.melting: (0.015, 0.06),
    Process.refining: (0.01, 0.04),
    Process.casting: (0.004, 0.02),
}
OVER_LIMIT = 0.02  # share of runs that lose more than their process allows
KWH_PER_T = {
    Process.sorting: 8, Process.shredding: 35, Process.baling: 6, Process.decoating: 60,
    Process.drying: 45, Process.splitting: 20, Process.casting: 40,
}  # fmt: skip

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗龙潘田罗石韦蒙"
GIVEN = "国明华建军平志红芳勇强伟秀英兰玉梅丽静敏飞云贵黔林海波涛学文德"
ORG_KINDS = ["机械厂", "汽车维修有限公司", "建筑工程有限公司", "铝门窗厂", "电器有限公司",
             "拆车有限公司", "五金制品厂", "线缆有限公司", "压铸件厂",
             "物业管理有限公司"]  # fmt: skip
ORG_WORDS = "鑫盛恒达兴隆丰顺宏源金鼎华宇黔通山城凯旋新锐永利"
CARRIERS = ["贵州黔运通物流有限公司", "贵州绿色货运新能源物流有限公司", "自有车辆"]
REFUSALS = [
    "夹杂铁件和塑料超标 (iron and plastics above contract)",
    "含油含水超标 (oil and moisture above contract)",
    "发现密闭容器, 拒收 (sealed containers found)",
]


def uscc_for(key: str, region: str) -> str:
    """A valid, stable USCC for a demo enterprise: `91` (an enterprise registered by market
    regulation), the home county, nine characters from the key's hash, the check character."""
    digest = hashlib.sha256(f"scrapflow-demo:{key}".encode()).digest()
    body = "91" + region + "".join(USCC_CHARSET[b % len(USCC_CHARSET)] for b in digest[:9])
    return body + uscc_check_character(body)


def distance_km(a: str, b: str) -> Decimal:
    """Road distance between two county seats: great circle × 1.3, at least 4 km."""
    _, lat1, lon1 = COUNTIES[a]
    _, lat2, lon2 = COUNTIES[b]
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    km = 2 * 6371 * math.asin(math.sqrt(h)) * 1.3
    return Decimal(max(km, 4.0)).quantize(Decimal("0.1"))


def mean_lot_g() -> float:
    """The expected mass of a registered lot (see `Demo._registration`), for capacities."""
    household = 0.78 * 22_000 * math.exp(0.9**2 / 2) + 0.22 * 7_000 * math.exp(0.9**2 / 2)
    business = 450_000 * math.exp(0.8**2 / 2)
    return 0.9 * household + 0.1 * business


class NetworkExists(Exception):
    """The demo's enterprises are registered already (USCCs are unique)."""


# --- state -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Site:
    spec: FacilitySpec
    facility_id: uuid.UUID
    enterprise_id: uuid.UUID
    actor: Actor

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def region(self) -> str:
        return self.spec.region


@dataclass(slots=True)
class Held:
    """A lot the demo keeps track of, at rest at a facility."""

    id: uuid.UUID
    grams: int
    metal: Metal
    form: ProductForm | None = None
    destination: DestinationUse | None = None
    recycled: tuple[int, int] = (0, 0)  # products: post- and pre-consumer grams
    producer: str = ""  # products: the smelter's key
    category: str = ""  # scrap bought from a household, to be bulked at the collection point


@dataclass(slots=True)
class Trip:
    shipment_id: uuid.UUID
    source: Site
    target: Site
    lots: list[Held]


@dataclass
class Result:
    lots: int
    seconds: float
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    # Per stage, summed over lanes: wall and CPU seconds of the driving processes.
    stages: dict[str, tuple[float, float]] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def lots_per_second(self) -> float:
        return self.lots / self.seconds if self.seconds else 0.0


class Demo:
    def __init__(
        self,
        factory: async_sessionmaker[AsyncSession],
        vault: lots.SellerVault,
        signer: Signer,
        *,
        tolerances: dict[str, Decimal],
        verification_url: str,
        total: int,
        seed: int,
        echo: Echo,
        lane: int = 0,
        lanes: int = 1,
    ) -> None:
        self.factory = factory
        self.vault = vault
        self.signer = signer
        self.tolerances = tolerances
        self.verification_url = verification_url
        self.total = total
        # A demo's choices, not secrets; each lane draws its own.
        self.rng = random.Random(f"{seed}:{lane}")  # noqa: S311
        self.echo = echo
        self.lane, self.lanes = lane, lanes
        self.first = lane == 0  # the first lane also plays the one-off scenes
        self.sites: dict[str, Site] = {}
        self.enterprises: dict[str, uuid.UUID] = {}
        self.supervisor: Actor = SYSTEM
        self.points: list[Site] = []  # this lane's collection points
        # Lots waiting at each facility: to be shipped (outbox) or processed (inbox).
        self.outbox: dict[str, list[Held]] = defaultdict(list)
        self.inbox: dict[str, list[Held]] = defaultdict(list)
        self.to_cast: dict[str, list[Held]] = defaultdict(list)
        self.pending: dict[str, list[Trip]] = defaultdict(list)  # leg → shipments in transit
        self.tickets: Counter[str] = Counter()
        self.sellers: dict[str, list[lots.Seller]] = {}
        self.organisations: dict[str, list[lots.Seller]] = {}
        self.declarations = 0
        self.country = "JP"
        self.credit: Counter[tuple[str, str, int]] = Counter()  # (smelter, metal, class) → g
        self.stats: Counter[str] = Counter()
        self.registered = 0
        self.voided = not self.first
        self.duplicated_ticket = not self.first
        self.staged = not self.first
        self.flagged = not self.first
        self.exported = not self.first
        self.certified: Counter[str] = Counter()  # certificates by producer in this lane
        self.to_certify: list[tuple[str, Held]] = []  # several lanes: certified at the end
        self.label = ""  # progress lines of a lane name it
        self.started = time.perf_counter()
        self.stages: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])  # wall, cpu

    # --- plumbing -------------------------------------------------------------------------

    def _pick(self, weighted: Sequence[tuple[Any, float]]) -> Any:
        return self.rng.choices([w[0] for w in weighted], [w[1] for w in weighted])[0]

    def _now(self) -> datetime:
        return utcnow()

    def _progress(self, what: str) -> None:
        elapsed = time.perf_counter() - self.started
        rate = self.registered / elapsed if elapsed else 0
        self.echo(
            f"[{elapsed:7.1f} s] {self.label}{what} ({self.registered:,} lots, {rate:,.0f} lots/s)"
        )

    async def _stage(self, name: str, work: Awaitable[None]) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        await work
        self.stages[name][0] += time.perf_counter() - wall
        self.stages[name][1] += time.process_time() - cpu

    def load(self, network: Network) -> None:
        self.sites, self.enterprises, self.supervisor = (
            network.sites,
            network.enterprises,
            network.supervisor,
        )
        self.points = [self.sites[key] for key in partition(self.lanes)[self.lane]]

    # --- the network ----------------------------------------------------------------------

    async def build_network(self) -> Network:
        async with self.factory() as session:
            first = uscc_for(ENTERPRISES[0].key, ENTERPRISES[0].region)
            if await session.scalar(
                select(col(Enterprise.id)).where(col(Enterprise.uscc) == first)
            ):
                raise NetworkExists(
                    "the demo network is already in this database: run the demo on an empty one"
                )
            actors: dict[str, Actor] = {}
            for spec in ENTERPRISES:
                enterprise = await registry.create_enterprise(
                    session,
                    SYSTEM,
                    name=spec.name,
                    uscc=uscc_for(spec.key, spec.region),
                    roles=list(spec.roles),
                    region_code=spec.region,
                )
                key, _ = await identity.create_api_key(
                    session,
                    SYSTEM,
                    name="demo: ERP integration",
                    role=Role.operator,
                    owner=identity.Owner(enterprise.id, None),
                    expires_at=None,
                )
                self.enterprises[spec.key] = enterprise.id
                actors[spec.key] = Actor(
                    key.id, PrincipalKind.api_key, Role.operator, enterprise_id=enterprise.id
                )
            intake = self._expected_intake()
            for number, place in enumerate(FACILITIES, start=1):
                county, lat, lon = COUNTIES[place.region]
                capacity_t = max(1, round(intake.get(place.key, 0) / 1_000_000 / place.load))
                owner = self.enterprises[place.enterprise]
                facility = await registry.create_facility(
                    session,
                    SYSTEM,
                    enterprise_id=owner,
                    name=place.name,
                    kind=place.kind.value,
                    region_code=place.region,
                    address=f"{county}{place.name}",
                    latitude=round(lat + (number % 7 - 3) * 0.004, 6),
                    longitude=round(lon + (number % 5 - 2) * 0.004, 6),
                    annual_capacity_g=capacity_t * 1_000_000,
                    permit_no=f"黔再生备{place.region[:4]}-{number:04d}",
                )
                self.sites[place.key] = Site(place, facility.id, owner, actors[place.enterprise])
            province = await registry.create_authority(
                session, SYSTEM, name="贵州省工业和信息化厅", jurisdiction="52"
            )
            for code, name in PREFECTURES.items():
                await registry.create_authority(
                    session, SYSTEM, name=f"{name}市(州)工业和信息化局", jurisdiction=code
                )
            key, _ = await identity.create_api_key(
                session,
                SYSTEM,
                name="demo: provincial supervisor",
                role=Role.supervisor,
                owner=identity.Owner(None, province.id),
                expires_at=None,
            )
            self.supervisor = Actor(
                key.id,
                PrincipalKind.api_key,
                Role.supervisor,
                authority_id=province.id,
                jurisdiction="52",
            )
            await session.commit()
        self._progress(
            f"network: {len(ENTERPRISES)} enterprises, {len(FACILITIES)} facilities,"
            f" {len(PREFECTURES) + 1} authorities"
        )
        return Network(self.sites, self.enterprises, self.supervisor)

    def _expected_intake(self) -> dict[str, float]:
        """Grams each facility takes in over the demo (a year of the province), from the routes."""
        per_lot = mean_lot_g()
        points = [f for f in FACILITIES if f.kind is CP]
        weight = sum(f.weight for f in points)
        intake: defaultdict[str, float] = defaultdict(float)
        for point in points:
            grams = self.total * point.weight / weight * per_lot
            if point.imports:
                grams *= 1_000_000 / per_lot  # bales of about a tonne
            intake[point.key] += grams
            routes = TO_SMELTER[point.key] if point.imports else TO_CENTRE[point.region[:4]]
            for target, share in routes:
                intake[target] += grams * share
        for centre, routes in TO_SMELTER.items():
            if centre.startswith("c-"):
                graded = intake[centre] * 0.97
                for smelter, share in routes:
                    intake[smelter] += graded * share * 0.8  # copper is about a fifth
                intake[COPPER_SMELTER] += graded * 0.2
        made = {"electrolytic": 5.0, "secondary": 1.06, "copper": 1.15}  # with primary metal
        forms = {
            "electrolytic": [("molten", 0.9), ("ingot", 0.1)],
            "secondary": [("ingot", 0.7), ("billet", 0.3)],
            "copper": [("rod", 0.8), ("cathode", 0.2)],
        }
        for smelter, kind in SMELTER_TYPE.items():
            for form, share in forms[kind]:
                for plant, weight in TO_PROCESSOR[smelter, form]:
                    intake[plant] += intake[smelter] * made[kind] * share * weight
        return dict(intake)

    # --- sellers --------------------------------------------------------------------------

    def _person(self, region: str) -> lots.Seller:
        rng = self.rng
        name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.randint(1, 2)))
        born = datetime(1950, 1, 1) + timedelta(days=rng.randrange(0, 52 * 365))
        first17 = f"{region}{born:%Y%m%d}{rng.randrange(1000):03d}"
        return lots.Seller("individual", name, id_number=first17 + resident_id_check_digit(first17))

    def _organisation(self, region: str) -> lots.Seller:
        rng = self.rng
        prefecture = PREFECTURES.get(region[:4], "重庆")
        name = prefecture + rng.choice(ORG_WORDS) + rng.choice(ORG_WORDS) + rng.choice(ORG_KINDS)
        body = "91" + region + "".join(rng.choice(USCC_CHARSET) for _ in range(9))
        return lots.Seller("organisation", name, uscc=body + uscc_check_character(body))

    def _seller(self, site: Site, business: bool) -> lots.Seller:
        """Regular sellers: a pool of people and businesses around each collection point."""
        pools = self.organisations if business else self.sellers
        pool = pools.setdefault(site.key, [])
        size = 40 if business else 400
        if len(pool) < size:
            make = self._organisation if business else self._person
            pool.append(make(site.region))
            return pool[-1]
        return pool[self.rng.randrange(size)]

    # --- registration ---------------------------------------------------------------------

    def _registration(self, site: Site, now: datetime) -> lots.Registration:
        rng = self.rng
        collected_at = now - timedelta(minutes=rng.randint(20, 72 * 60))
        channel = "online" if rng.random() < site.spec.online else "offline"
        if site.spec.imports:
            metal = Metal.aluminium if rng.random() < 0.75 else Metal.copper
            category, standard = self._pick([((c, s), w) for c, s, w in IMPORTED[metal]])
            if self.declarations % 20 == 0:
                self.country = self._pick(IMPORT_COUNTRIES)
            self.declarations += 1
            return lots.Registration(
                facility_id=site.facility_id,
                metal=metal,
                category=category,
                net_g=round(rng.lognormvariate(math.log(1_000), 0.25)) * 1000,
                consumer_class=ConsumerClass.post_consumer,
                channel="offline",
                collected_at=collected_at,
                origin=Origin.import_,
                import_country=self.country,
                customs_declaration_no=f"8301{now.year}1{self.declarations // 20:09d}",
                conformity_standard=standard,
                seller=lots.Seller("organisation", EXPORTERS[self.country]),
            )
        metal = Metal.aluminium if rng.random() < 0.78 else Metal.copper
        if rng.random() < 0.9:  # a household or a collector: small, post-consumer
            median = 22 if metal is Metal.aluminium else 7
            kg = max(0.5, round(rng.lognormvariate(math.log(median), 0.9), 1))
            return lots.Registration(
                facility_id=site.facility_id,
                metal=metal,
                category=self._pick(HOUSEHOLD[metal]),
                net_g=round(kg * 1000),
                consumer_class=ConsumerClass.post_consumer,
                channel=channel,
                collected_at=collected_at,
                seller=self._seller(site, business=False),
            )
        factory = rng.random() < 0.7
        return lots.Registration(
            facility_id=site.facility_id,
            metal=metal,
            category=self._pick((FACTORY if factory else DEMOLITION)[metal]),
            net_g=max(5, round(rng.lognormvariate(math.log(450), 0.8))) * 1000,
            consumer_class=ConsumerClass.pre_consumer if factory else ConsumerClass.post_consumer,
            channel="offline" if factory else channel,
            collected_at=collected_at,
            seller=self._seller(site, business=True),
        )

    async def register(self, count: int) -> None:
        """This lane's share of `count` new lots, bought at its collection points."""
        points = self.points
        shares = _apportion(count, [p.spec.weight for p in points])
        imports = next((i for i, p in enumerate(points) if p.spec.imports), None)
        if imports is not None and count >= 100 and shares[imports] < 3:  # a few imports
            missing = 3 - shares[imports]
            shares[imports] += missing
            shares[max(range(len(shares)), key=lambda i: shares[i])] -= missing
        by_enterprise: dict[str, list[tuple[Site, int]]] = defaultdict(list)
        for point, n in zip(points, shares, strict=True):
            if n:
                by_enterprise[point.spec.enterprise].append((point, n))
        now = self._now()
        async with self.factory() as session:
            for places in by_enterprise.values():
                items = [self._registration(p, now) for p, n in places for _ in range(n)]
                sites = [p for p, n in places for _ in range(n)]
                for start in range(0, len(items), BATCH):
                    chunk = items[start : start + BATCH]
                    done = await lots.register_batch(session, places[0][0].actor, self.vault, chunk)
                    for item, lot, site in zip(
                        chunk, done, sites[start : start + BATCH], strict=True
                    ):
                        household = (
                            item.seller is not None
                            and item.seller.kind == "individual"
                            and item.origin is Origin.domestic
                        )
                        self.outbox[site.key].append(
                            Held(
                                lot.id,
                                lot.net_g,
                                item.metal,
                                category=item.category if household else "",
                            )
                        )
                    await session.commit()
                    self.registered += len(chunk)
        self.stats["registered"] += sum(shares)

    async def split_some(self) -> None:
        """A collection point splits a few large business lots to send them to two centres."""
        async with self.factory() as session:
            for site in self.points[:3]:
                key = site.key
                big = [h for h in self.outbox[key] if h.grams >= 200_000]
                if not big:
                    continue
                lot = big[0]
                first = lot.grams * self.rng.randint(30, 70) // 100
                _, children = await lots.split_lot(
                    session, site.actor, lot.id, [first, lot.grams - first]
                )
                self.outbox[key].remove(lot)
                self.outbox[key] += [Held(c.id, c.net_g, lot.metal) for c in children]
                self.stats["splits"] += 1
            await session.commit()

    # --- shipments ------------------------------------------------------------------------

    def _vehicle(self, source: Site, km: Decimal, molten: bool) -> dict[str, Any]:
        rng = self.rng
        if molten:  # ladle trucks
            energy = self._pick([("diesel", 0.6), ("lng", 0.4)])
        elif km < 60:
            energy = self._pick([("electric", 0.38), ("diesel", 0.37), ("lng", 0.15),
                                 ("hybrid", 0.1)])  # fmt: skip
        else:
            energy = self._pick([("diesel", 0.55), ("lng", 0.33), ("electric", 0.08),
                                 ("hydrogen", 0.02), ("hybrid", 0.02)])  # fmt: skip
        prefix = PLATE.get(source.region[:4], "贵A")
        letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
        if energy in ("electric", "hydrogen"):
            plate = f"{prefix}D{rng.randrange(10000, 99999)}"
            standard = None
        else:
            plate = f"{prefix}{rng.choice(letters)}{rng.randrange(1000, 9999)}"
            standard = "国VI" if rng.random() < 0.8 else "国V"
        carrier = (
            CARRIERS[1] if energy == "electric" and rng.random() < 0.6 else rng.choice(CARRIERS)
        )
        return {
            "carrier": carrier,
            "vehicle_plate": plate,
            "vehicle_energy": energy,
            "emission_standard": standard,
            "distance_km": km,
        }

    async def _dispatch(
        self, session: AsyncSession, leg: str, source: Site, target: Site, load: list[Held]
    ) -> None:
        km = distance_km(source.region, target.region)
        molten = any(h.form is ProductForm.molten for h in load)
        manifest = await shipments.dispatch(
            session,
            source.actor,
            shipments.Dispatch(
                source.facility_id,
                target.facility_id,
                [h.id for h in load],
                **self._vehicle(source, km, molten),
            ),
        )
        self.pending[leg].append(Trip(manifest.shipment.id, source, target, load))
        self.stats[f"shipments.{leg}"] += 1

    def _loads(self, held: list[Held], max_g: int, max_lots: int) -> list[list[Held]]:
        loads: list[list[Held]] = [[]]
        grams = 0
        for lot in held:
            if loads[-1] and (grams + lot.grams > max_g or len(loads[-1]) >= max_lots):
                loads.append([])
                grams = 0
            loads[-1].append(lot)
            grams += lot.grams
        return [load for load in loads if load]

    def _hold_back(self, held: list[Held], final: bool, share: float) -> list[Held]:
        """In the last wave a few lots stay where they are (active at every stage)."""
        if not final or len(held) < 2:
            return held
        keep = max(1, round(len(held) * share))
        return held[:-keep]

    async def bulk(self, final: bool, started: datetime) -> None:
        """Collection points bulk the day's small purchases from households into bags and bales
        (by metal; cans and cable apart) before they travel; business lots travel as bought."""
        async with self.factory() as session:
            moved = 0
            for key, site in self.sites.items():
                if site.spec.kind is not CP or site.spec.imports:
                    continue
                small = [h for h in self.outbox[key] if h.category]
                small = self._hold_back(small, final, 0.01)
                chosen = {h.id for h in small}
                self.outbox[key] = [h for h in self.outbox[key] if h.id not in chosen]
                groups: dict[tuple[Metal, str], list[Held]] = defaultdict(list)
                for lot in small:
                    group = lot.category if lot.category in BULKED_APART else "mixed"
                    groups[lot.metal, group].append(lot)
                for (metal, _), held in groups.items():
                    for start in range(0, len(held), BULK_LOTS):
                        batch = held[start : start + BULK_LOTS]
                        await self._bulk_run(session, site, metal, batch, started)
                        moved += len(batch)
                        if moved >= COMMIT_LOTS:
                            await session.commit()
                            moved = 0
            await session.commit()

    async def _bulk_run(
        self, session: AsyncSession, site: Site, metal: Metal, batch: list[Held], started: datetime
    ) -> None:
        mass: Counter[str] = Counter()
        for lot in batch:
            mass[lot.category] += lot.grams
        category = mass.most_common(1)[0][0]  # the bag is labelled with what it mostly holds
        total = sum(h.grams for h in batch)
        losses = self._losses(Process.bulking, total) if self.rng.random() < 0.3 else []
        recorded = await transformations.record(
            session,
            site.actor,
            transformations.Run(
                facility_id=site.facility_id,
                process=Process.bulking,
                inputs=[transformations.Take(h.id, h.grams) for h in batch],
                outputs=[
                    transformations.Output(
                        LotKind.scrap,
                        metal,
                        total - sum(x.grams for x in losses),
                        category=category,
                    )
                ],
                losses=losses,
                started_at=started,
                ended_at=self._now(),
                # The bagging scale and the forklift, where the point meters them.
                electricity_kwh=Decimal(total * self.rng.uniform(1.5, 3) / 1_000_000).quantize(
                    Decimal("0.1")
                )
                if self.rng.random() < 0.6
                else None,
            ),
        )
        self.outbox[site.key] += [Held(o.id, o.net_g, metal) for o in recorded.outputs]
        self.stats["runs.bulking"] += 1

    async def ship_collections(self, final: bool) -> None:
        async with self.factory() as session:
            moved = 0
            for key, site in self.sites.items():
                if site.spec.kind is not CP or not self.outbox[key]:
                    continue
                waiting = self.outbox[key]
                going = self._hold_back(waiting, final, 0.01)
                self.outbox[key] = waiting[len(going) :]
                if site.spec.imports:
                    by_metal = {m: [h for h in going if h.metal is m] for m in Metal}
                    for metal, held in by_metal.items():
                        for load in self._loads(held, TRUCK_G, TRUCK_LOTS):
                            target = (
                                COPPER_SMELTER
                                if metal is Metal.copper
                                else self._pick(TO_SMELTER[key])
                            )
                            await self._dispatch(session, "import", site, self.sites[target], load)
                    continue
                for load in self._loads(going, TRUCK_G, TRUCK_LOTS):
                    target = self._pick(TO_CENTRE[site.region[:4]])
                    await self._dispatch(session, "collection", site, self.sites[target], load)
                    moved += len(load)
                    if moved >= COMMIT_LOTS:
                        await session.commit()
                        moved = 0
            await session.commit()

    def _weighed(self, lot: Held, careful: bool) -> shipments.ReceiptLine:
        """The receiver's scale: within half a percent mostly, now and then well short; a few
        loads partly or wholly refused."""
        rng = self.rng
        roll = rng.random()
        if careful:  # products: the customer accepts the smelter's weighbridge note
            return shipments.ReceiptLine(lot.id, lot.grams)
        if roll < 0.004:
            factor = 1 - rng.uniform(0.015, 0.05)  # missing metal: a discrepancy
        else:
            factor = 1 + max(-0.009, min(0.009, rng.gauss(-0.001, 0.003)))
        received = max(1, round(lot.grams * factor))
        roll = rng.random()
        if roll < 0.002:
            return shipments.ReceiptLine(lot.id, received, received, rng.choice(REFUSALS))
        if roll < 0.005 and received > 10:
            refused = received * rng.randint(10, 40) // 100
            return shipments.ReceiptLine(lot.id, received, refused, rng.choice(REFUSALS))
        return shipments.ReceiptLine(lot.id, received)

    async def receive(self, leg: str, final: bool, hold_share: float = 0.02) -> None:
        trips = self.pending[leg]
        held = self._in_transit(trips, hold_share) if final else set()
        arriving = [t for i, t in enumerate(trips) if i not in held]
        self.pending[leg] = [t for i, t in enumerate(trips) if i in held]
        careful = leg == "products"
        async with self.factory() as session:
            moved = 0
            for trip in arriving:
                lines = [self._weighed(lot, careful) for lot in trip.lots]
                if not self.staged and leg == "collection" and len(lines) >= 3:
                    self.staged = True
                    lines[:3] = self._staged(trip.lots[:3])
                ticket = self._ticket(trip.target)
                await shipments.receive(
                    session,
                    trip.target.actor,
                    trip.shipment_id,
                    shipments.Receipt(lines, weighbridge_ticket_no=ticket),
                    self.tolerances,
                )
                for lot, line in zip(trip.lots, lines, strict=True):
                    assert line.received_g is not None  # the demo always weighs
                    accepted = line.received_g - line.refused_g
                    if accepted > 0:
                        lot.grams = accepted
                        self.inbox[trip.target.key].append(lot)
                    self.stats["refused_lines"] += line.refused_g > 0
                moved += len(trip.lots)
                if moved >= COMMIT_LOTS:
                    await session.commit()
                    moved = 0
            await session.commit()

    def _in_transit(self, trips: list[Trip], share: float) -> set[int]:
        """Which trips stay on the road at the end: the last ones to facilities that get others,
        so that every facility still receives something."""
        if share == 0:
            return set()
        arriving = Counter(t.target.key for t in trips)
        keep = max(1, round(len(trips) * share))
        held: set[int] = set()
        for index in range(len(trips) - 1, -1, -1):
            target = trips[index].target.key
            if len(held) < keep and arriving[target] > 1:
                held.add(index)
                arriving[target] -= 1
        return held

    def _staged(self, lots_: list[Held]) -> list[shipments.ReceiptLine]:
        """The first load of the demo: one lot refused, one partly refused, one well short."""
        first, second, third = lots_
        partly = max(1, second.grams // 4)
        short = max(1, third.grams * 95 // 100)
        return [
            shipments.ReceiptLine(first.id, first.grams, first.grams, REFUSALS[2]),
            shipments.ReceiptLine(second.id, second.grams, partly, REFUSALS[0]),
            shipments.ReceiptLine(third.id, short),
        ]

    def _ticket(self, site: Site) -> str:
        """The weighbridge ticket of a receipt; lanes number a facility's tickets in turn."""
        self.tickets[site.key] += 1
        count = self.tickets[site.key]
        if not self.duplicated_ticket and site.spec.kind is CENTRE and count == 3:
            self.duplicated_ticket = True  # a ticket used twice: the anomaly report shows it
            count = 2
        number = (count - 1) * self.lanes + self.lane + 1
        return f"WB{site.region}{site.spec.key[-3:].upper()}{number:07d}"

    # --- pretreatment ---------------------------------------------------------------------

    def _losses(
        self, process: Process, total: int, over: bool = False
    ) -> list[transformations.Loss]:
        rng = self.rng
        low, high = LOSS_LIMIT[process]
        share = rng.uniform(low, high)
        if rng.random() < OVER_LIMIT or over:
            share = high * rng.uniform(1.6, 2.2)  # more than the process allows: flagged
        lost = round(total * share)
        kinds = LOSS_KINDS.get(process, [LossKind.dross])
        if lost == 0:
            return []
        if len(kinds) == 1 or lost < 2:
            return [transformations.Loss(kinds[0].value, lost)]
        first = lost * rng.randint(50, 85) // 100
        return [
            transformations.Loss(kinds[0].value, first),
            transformations.Loss(kinds[1].value, lost - first),
        ]

    def _parts(self, total: int, count: int) -> list[int]:
        count = max(1, min(count, total))
        weights = [self.rng.uniform(0.5, 1.5) for _ in range(count)]
        parts = [max(1, int(total * w / sum(weights))) for w in weights]
        parts[-1] = total - sum(parts[:-1])
        while parts[-1] < 1:
            largest = max(range(count - 1), key=lambda i: parts[i])
            parts[largest] -= 1
            parts[-1] += 1
        return parts

    async def pretreat(self, final: bool, started: datetime) -> None:
        async with self.factory() as session:
            moved = 0
            for key, site in self.sites.items():
                if site.spec.kind is not CENTRE:
                    continue
                waiting = self.inbox[key]
                going = self._hold_back(waiting, final, 0.015)
                self.inbox[key] = waiting[len(going) :]
                for metal in Metal:
                    held = [h for h in going if h.metal is metal]
                    for start in range(0, len(held), RUN_LOTS):
                        batch = held[start : start + RUN_LOTS]
                        await self._pretreat_run(session, site, metal, batch, started)
                        moved += len(batch)
                        if moved >= COMMIT_LOTS:
                            await session.commit()
                            moved = 0
            await session.commit()

    async def _pretreat_run(
        self, session: AsyncSession, site: Site, metal: Metal, batch: list[Held], started: datetime
    ) -> None:
        process: Process = self._pick(PRETREATMENT[metal])
        total = sum(h.grams for h in batch)
        over = self.voided and not self.flagged  # the run after the voided one lost too much
        self.flagged = self.flagged or self.voided
        losses = self._losses(process, total, over)
        kept = total - sum(x.grams for x in losses)
        grades = GRADES[metal, process]
        count = max(1, min(len(grades), math.ceil(kept / 25_000_000)))
        outputs = [
            transformations.Output(LotKind.scrap, metal, grams, category=grades[i % len(grades)])
            for i, grams in enumerate(self._parts(kept, count))
        ]
        tonnes = Decimal(total) / 1_000_000
        run = transformations.Run(
            facility_id=site.facility_id,
            process=process,
            inputs=[transformations.Take(h.id, h.grams) for h in batch],
            outputs=outputs,
            losses=losses,
            started_at=started,
            ended_at=self._now(),
            electricity_kwh=(
                tonnes * KWH_PER_T[process] * Decimal(self.rng.uniform(0.8, 1.2))
            ).quantize(Decimal("0.1"))
            if self.rng.random() < 0.85
            else None,
        )
        recorded = await transformations.record(session, site.actor, run)
        if not self.voided:  # the first run was recorded against the wrong shift: voided
            self.voided = True
            await transformations.void(
                session, site.actor, recorded.transformation.id, "录入班次错误 (wrong shift)"
            )
            recorded = await transformations.record(session, site.actor, run)
            self.stats["runs.voided"] += 1
        self.outbox[site.key] += [Held(o.id, o.net_g, metal) for o in recorded.outputs]
        self.stats[f"runs.{process.value}"] += 1
        self.stats["runs.flagged"] += recorded.transformation.loss_flagged

    async def ship_graded(self, final: bool) -> None:
        async with self.factory() as session:
            for key, site in self.sites.items():
                if site.spec.kind is not CENTRE or not self.outbox[key]:
                    continue
                waiting = self.outbox[key]
                going = self._hold_back(waiting, final, 0.03)
                self.outbox[key] = waiting[len(going) :]
                for metal in Metal:
                    held = [h for h in going if h.metal is metal]
                    for load in self._loads(held, CONVOY_G, 4):
                        target = (
                            COPPER_SMELTER if metal is Metal.copper else self._pick(TO_SMELTER[key])
                        )
                        await self._dispatch(session, "graded", site, self.sites[target], load)
            await session.commit()

    # --- smelting -------------------------------------------------------------------------

    async def melt(self, final: bool, started: datetime) -> None:
        async with self.factory() as session:
            for key, kind in SMELTER_TYPE.items():
                site = self.sites[key]
                waiting = self.inbox[key]
                if final and len(waiting) > 1:
                    self.inbox[key], waiting = waiting[-1:], waiting[:-1]
                else:
                    self.inbox[key] = []
                heat: list[Held] = []
                grams = 0
                for lot in waiting:
                    heat.append(lot)
                    grams += lot.grams
                    if grams >= HEAT_SCRAP_G[kind]:
                        await self._melt(session, site, kind, heat, started)
                        await session.commit()  # lanes share the plant's credit account lock
                        heat, grams = [], 0
                if heat and (final or grams >= HEAT_SCRAP_G[kind] // 3):
                    await self._melt(session, site, kind, heat, started)
                    await session.commit()
                elif heat:
                    self.inbox[key] = heat + self.inbox[key]
            for key in DIRECT_ALLOYING:
                if self.to_cast[key]:
                    await self._cast(session, self.sites[key], started)
            await session.commit()

    async def _melt(
        self, session: AsyncSession, site: Site, kind: str, heat: list[Held], started: datetime
    ) -> None:
        rng = self.rng
        metal = heat[0].metal
        takes = [transformations.Take(h.id, h.grams) for h in heat]
        partial = len(heat) > 1 and rng.random() < 0.3
        if partial:  # the last lot only in part: the rest waits for the next heat
            last = heat[-1]
            part = max(1, last.grams * rng.randint(40, 90) // 100)
            takes[-1] = transformations.Take(last.id, part)
            last.grams -= part
            self.inbox[site.key].insert(0, last)
        scrap = sum(t.grams for t in takes)
        if kind == "electrolytic":
            primary = [
                transformations.Primary(
                    metal, round(scrap * rng.uniform(3.0, 5.0)), "电解原铝液 (potline metal)"
                ),
                transformations.Primary(
                    metal, round(scrap * rng.uniform(0.005, 0.02)), "合金元素 Si, Mg (alloying)"
                ),
            ]
            process = Process.melting
        elif kind == "secondary":
            primary = [
                transformations.Primary(
                    metal, round(scrap * rng.uniform(0.03, 0.07)), "合金元素 Si, Cu (alloying)"
                )
            ]
            if rng.random() < 0.3:
                primary.append(
                    transformations.Primary(
                        metal, round(scrap * rng.uniform(0.03, 0.1)), "原铝锭 (primary ingot)"
                    )
                )
            process = Process.melting
        else:
            primary = [
                transformations.Primary(
                    metal, round(scrap * rng.uniform(0.1, 0.3)), "阴极铜 (copper cathode)"
                )
            ]
            process = Process.refining if rng.random() < 0.2 else Process.melting
        total = scrap + sum(p.grams for p in primary)
        losses = self._losses(process, total)
        made = total - sum(x.grams for x in losses)
        count = max(1 if made < 2_000_000 else 2, min(12, round(made / PRODUCT_LOT_G)))
        outputs = []
        for grams in self._parts(made, count):
            destination = None
            if kind == "electrolytic":
                form = ProductForm.molten
                direct = rng.random() < DIRECT_ALLOYING[site.key]
                destination = DestinationUse.direct_alloying if direct else DestinationUse.casting
            elif kind == "secondary":
                form = ProductForm.ingot if rng.random() < 0.7 else ProductForm.billet
            else:
                form = ProductForm.cathode if process is Process.refining else ProductForm.rod
            outputs.append(
                transformations.Output(
                    LotKind.product, metal, grams, product_form=form, destination_use=destination
                )
            )
        if kind == "electrolytic" and self.stats[f"melts.{site.key}"] == 0 and count > 1:
            # The first heat casts one ladle, so that every plant shows both uses.
            outputs[-1] = transformations.Output(
                LotKind.product,
                metal,
                outputs[-1].grams,
                product_form=ProductForm.molten,
                destination_use=DestinationUse.casting,
            )
        tonnes = Decimal(made) / 1_000_000
        energy: dict[str, Decimal] = {
            "electrolytic": {"electricity_kwh": tonnes * Decimal(rng.uniform(25, 45))},
            "secondary": {
                "electricity_kwh": tonnes * Decimal(rng.uniform(70, 120)),
                "natural_gas_m3": tonnes * Decimal(rng.uniform(60, 95)),
            },
            "copper": {"electricity_kwh": tonnes * Decimal(rng.uniform(280, 420))},
        }[kind]
        if rng.random() < 0.1:
            energy = {}  # not every heat reports its meters
        run = transformations.Run(
            facility_id=site.facility_id,
            process=process,
            inputs=takes,
            primary_inputs=primary,
            outputs=outputs,
            losses=losses,
            started_at=started,
            ended_at=self._now(),
            **{k: v.quantize(Decimal("0.1")) for k, v in energy.items()},
        )
        recorded = await transformations.record(session, site.actor, run)
        for lot in recorded.outputs:
            assert lot.product_form is not None
            held = Held(
                lot.id,
                lot.net_g,
                metal,
                ProductForm(lot.product_form),
                DestinationUse(lot.destination_use) if lot.destination_use else None,
                (lot.post_consumer_g, lot.pre_consumer_g),
                site.key,
            )
            self.credit[site.key, metal.value, 0] += lot.post_consumer_g
            self.credit[site.key, metal.value, 1] += lot.pre_consumer_g
            if held.destination is DestinationUse.casting:
                self.to_cast[site.key].append(held)
            else:
                self.outbox[site.key].append(held)
        self.stats[f"melts.{site.key}"] += 1
        self.stats["runs.smelting"] += 1
        self.stats["runs.flagged"] += recorded.transformation.loss_flagged

    async def _cast(self, session: AsyncSession, site: Site, started: datetime) -> None:
        """Molten aluminium not alloyed directly is cast into ingots at the plant."""
        molten = self.to_cast[site.key]
        self.to_cast[site.key] = []
        metal = Metal.aluminium
        total = sum(h.grams for h in molten)
        losses = self._losses(Process.casting, total)
        made = total - sum(x.grams for x in losses)
        count = max(1, min(12, round(made / PRODUCT_LOT_G)))
        recorded = await transformations.record(
            session,
            site.actor,
            transformations.Run(
                facility_id=site.facility_id,
                process=Process.casting,
                inputs=[transformations.Take(h.id, h.grams) for h in molten],
                outputs=[
                    transformations.Output(
                        LotKind.product, metal, grams, product_form=ProductForm.ingot
                    )
                    for grams in self._parts(made, count)
                ],
                losses=losses,
                started_at=started,
                ended_at=self._now(),
                electricity_kwh=(Decimal(made) / 1_000_000 * KWH_PER_T[Process.casting]).quantize(
                    Decimal("0.1")
                ),
            ),
        )
        for lot in recorded.outputs:
            self.outbox[site.key].append(
                Held(
                    lot.id,
                    lot.net_g,
                    metal,
                    ProductForm.ingot,
                    None,
                    (lot.post_consumer_g, lot.pre_consumer_g),
                    site.key,
                )
            )
        self.stats["runs.casting"] += 1

    async def ship_products(self, final: bool) -> None:
        async with self.factory() as session:
            for key in SMELTER_TYPE:
                site = self.sites[key]
                waiting = self.outbox[key]
                going = self._hold_back(waiting, final, 0.03)
                self.outbox[key] = waiting[len(going) :]
                routes: dict[str, list[Held]] = defaultdict(list)
                for lot in going:
                    assert lot.form is not None
                    options = TO_PROCESSOR[key, lot.form.value]
                    if not self.exported and any(p == "p-foshan" for p, _ in options):
                        self.exported = True  # at least one load leaves the province
                        routes["p-foshan"].append(lot)
                    else:
                        routes[self._pick(options)].append(lot)
                for target, held in routes.items():
                    for start in range(0, len(held), PRODUCT_SHIPMENT_LOTS):
                        load = held[start : start + PRODUCT_SHIPMENT_LOTS]
                        await self._dispatch(session, "products", site, self.sites[target], load)
            await session.commit()

    # --- certificates ---------------------------------------------------------------------

    async def certify(self) -> None:
        """Producers certify most product lots their customers received: the lot's own
        composition (proportional), or a mass-balance claim on the plant's credits for the
        electrolytic plants' molten metal, which is mostly primary.

        With several lanes the certificates are issued after all lanes are done: a debit's
        ledger entries refer to (and so key-share lock) the lots whose credits it draws, which
        may be another lane's products that this moment are locked for a shipment, and the two
        transactions can deadlock (see `certify_after`)."""
        chosen = []
        for key, site in self.sites.items():
            if site.spec.kind is not PLANT:
                continue
            received = self.inbox[key]
            self.inbox[key] = []
            chosen += [
                (key, lot)
                for index, lot in enumerate(received)
                if not index or self.rng.random() <= 0.7
            ]
        if self.lanes > 1:
            self.to_certify += chosen
            return
        await self.certify_after(chosen)

    async def certify_after(self, chosen: Sequence[tuple[str, Held]]) -> None:
        async with self.factory() as session:
            for key, lot in chosen:
                await self._certificate(session, self.sites[key], lot)
                await session.commit()  # one producer's account lock at a time

    async def _certificate(self, session: AsyncSession, customer: Site, lot: Held) -> None:
        producer = self.sites[lot.producer]
        metal = lot.metal.value
        balance = (self.credit[producer.key, metal, 0], self.credit[producer.key, metal, 1])
        issued = self.certified[producer.key]
        self.certified[producer.key] += 1
        # The plants' first certificate is proportional, the second (for the electrolytic
        # plants' molten metal) and 60% of the rest mass balance.
        if producer.key in DIRECT_ALLOYING and (
            issued == 1 or (issued > 1 and self.rng.random() < 0.6)
        ):
            # Molten metal is mostly primary: the plant allocates part of its credits.
            claim = min(lot.grams * self.rng.randint(20, 40) // 100, sum(balance) // 4)
            if claim <= 0:
                return
            request = credits.Issue(
                lot.id, customer.enterprise_id, Method.mass_balance, claimed_g=claim
            )
            post = min(claim, balance[0])
            spent = (post, claim - post)
        else:
            spent = lot.recycled
            if sum(spent) == 0 or spent[0] > balance[0] or spent[1] > balance[1]:
                return
            request = credits.Issue(lot.id, customer.enterprise_id, Method.proportional)
        try:
            async with session.begin_nested():
                await credits.issue_certificate(
                    session, producer.actor, self.signer, request, self.verification_url
                )
        except credits.InsufficientCredits:
            self.stats["certificates.short"] += 1  # the demo's own ledger was wrong: a bug
            return
        self.credit[producer.key, metal, 0] -= spent[0]
        self.credit[producer.key, metal, 1] -= spent[1]
        self.stats[f"certificates.{request.method.value}"] += 1

    # --- oversight ------------------------------------------------------------------------

    async def answer_discrepancies(self) -> None:
        """Senders answer some of the new discrepancies; the province resolves a few."""
        async with self.factory() as session:
            opened = list(
                await session.execute(
                    text(
                        "SELECT d.id, d.sender_enterprise_id FROM discrepancy d"
                        " WHERE d.status = 'open' ORDER BY d.opened_at, d.id LIMIT 60"
                    )
                )
            )
            senders = {s.enterprise_id: s.actor for s in self.sites.values()}
            for index, (discrepancy_id, sender) in enumerate(opened):
                if index % 3 == 2:
                    continue  # left open for now
                answer = (
                    DiscrepancyStatus.acknowledged if index % 3 == 0 else DiscrepancyStatus.disputed
                )
                await shipments.answer_discrepancy(
                    session,
                    senders[sender],
                    discrepancy_id,
                    answer,
                    "称重差异属实, 同意扣减 (the difference is real)"
                    if answer is DiscrepancyStatus.acknowledged
                    else "发货时过磅记录无误 (our weighbridge ticket says otherwise)",
                )
                if index % 6 == 1:
                    await shipments.resolve_discrepancy(
                        session,
                        self.supervisor,
                        discrepancy_id,
                        "双方复磅后按收货重量结算 (settled on the receiver's re-weighing)",
                    )
            await session.commit()

    async def suspend_weining(self) -> None:
        """The province suspends a small Weining buyer for buying power cable from unregistered
        sellers; the load it had already dispatched is still received (an anomaly)."""
        async with self.factory() as session:
            await registry.set_enterprise_status(
                session,
                self.supervisor,
                self.enterprises["rc-wn"],
                Status.suspended,
                "收购来源不明的电力电缆 (power cable bought from unregistered sellers)",
            )
            await session.commit()

    # --- the whole run --------------------------------------------------------------------

    async def drive(self) -> None:
        """This lane's lots, wave after wave, through every step."""
        self.label = f"lane {self.lane + 1}/{self.lanes}: " if self.lanes > 1 else ""
        waves = max(1, math.ceil(self.total / WAVE_LOTS))
        weights = [sum(self.sites[k].spec.weight for k in keys) for keys in partition(self.lanes)]
        stage = self._stage
        for wave in range(waves):
            final = wave == waves - 1
            count = min(WAVE_LOTS, self.total - wave * WAVE_LOTS)
            started = self._now()
            await stage("register", self.register(_apportion(count, weights)[self.lane]))
            if wave == 0 and self.first:
                await stage("split", self.split_some())
            await stage("bulk at collection points", self.bulk(final, started))
            await stage("ship to pretreatment", self.ship_collections(final))
            if final and self.first:
                await stage("suspend", self.suspend_weining())
            await stage("receive at pretreatment", self.receive("collection", final))
            await stage("receive imports", self.receive("import", final, hold_share=0))
            await stage("pretreat", self.pretreat(final, started))
            await stage("ship to smelters", self.ship_graded(final))
            await stage("receive at smelters", self.receive("graded", final))
            await stage("melt and cast", self.melt(final, started))
            await stage("ship products", self.ship_products(final))
            await stage("receive products", self.receive("products", final, hold_share=0.05))
            await stage("certify", self.certify())
            if self.first:
                await stage("discrepancies", self.answer_discrepancies())
            self._progress(f"wave {wave + 1}/{waves}")


@dataclass(frozen=True, slots=True)
class Network:
    sites: dict[str, Site]
    enterprises: dict[str, uuid.UUID]
    supervisor: Actor


def partition(lanes: int) -> list[list[str]]:
    """Collection points shared out to lanes by weight. The first lane has the importer and the
    Weining buyer (the suspension scene); downstream facilities are shared."""
    points = [f for f in FACILITIES if f.kind is CP]
    first = [f for f in points if f.imports or f.key == "cp-wn-weining"]
    shares: list[list[str]] = [[] for _ in range(lanes)]
    loads = [0.0] * lanes
    for spec in first + sorted(
        (f for f in points if f not in first), key=lambda f: (-f.weight, f.key)
    ):
        lane = 0 if spec in first else min(range(lanes), key=lambda i: (loads[i], i))
        shares[lane].append(spec.key)
        loads[lane] += spec.weight
    order = {f.key: i for i, f in enumerate(points)}
    return [sorted(keys, key=order.__getitem__) for keys in shares]


def _apportion(total: int, weights: Sequence[float]) -> list[int]:
    """`total` shared by `weights` in whole numbers (largest remainder)."""
    exact = [total * w / sum(weights) for w in weights]
    shares = [int(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: exact[i] - shares[i], reverse=True)
    for i in order[: total - sum(shares)]:
        shares[i] += 1
    return shares


_LEG = """
CASE WHEN a.kind = 'collection_point' AND b.kind = 'pretreatment_center' THEN 'collection'
     WHEN a.kind = 'collection_point' THEN 'import'
     WHEN a.kind = 'pretreatment_center' THEN 'graded'
     ELSE 'products' END
"""

SUMMARY = {
    "lots by status": "SELECT status, count(*) FROM lot GROUP BY 1 ORDER BY 1",
    "lots by kind": "SELECT kind || ' ' || metal, count(*) FROM lot GROUP BY 1 ORDER BY 1",
    "shipments by leg and status": (
        f"SELECT {_LEG} || ' ' || s.status, count(*) FROM shipment s"  # noqa: S608 - constant
        " JOIN facility a ON a.id = s.from_facility_id"
        " JOIN facility b ON b.id = s.to_facility_id GROUP BY 1 ORDER BY 1"
    ),
    "runs by process": (
        "SELECT process || ' ' || status || CASE WHEN loss_flagged THEN ' (loss flagged)'"
        " ELSE '' END, count(*) FROM transformation GROUP BY 1 ORDER BY 1"
    ),
    "discrepancies by status": "SELECT status, count(*) FROM discrepancy GROUP BY 1 ORDER BY 1",
    "certificates by method": "SELECT method, count(*) FROM certificate GROUP BY 1 ORDER BY 1",
    "tonnes": (
        "SELECT 'registered', sum((payload->>'net_g')::bigint) / 1000000 FROM event"
        " WHERE type = 'lot.registered'"
        " UNION ALL SELECT 'products made', sum(output_g) / 1000000 FROM transformation"
        " WHERE status = 'recorded' AND process IN ('melting', 'refining')"
    ),
    "events": "SELECT 'events', count(*) FROM event",
}


async def summary(session: AsyncSession) -> dict[str, dict[str, int]]:
    result = {}
    for title, sql in SUMMARY.items():
        rows = await session.execute(text(sql))
        result[title] = {str(k): int(v or 0) for k, v in rows}
    return result


def report(result: Result, echo: Echo) -> None:
    for title, counts in result.counts.items():
        echo(f"{title}:")
        for key, value in counts.items():
            echo(f"  {key:<44} {value:>12,}")
    echo("time per stage (wall s, driver CPU s; summed over lanes):")
    for name, (wall, cpu) in result.stages.items():
        echo(f"  {name:<44} {wall:>8.1f} {cpu:>8.1f}")
    if result.stats.get("certificates.short"):
        echo(f"certificates refused for want of credits: {result.stats['certificates.short']}")
    echo(f"{result.lots:,} lots in {result.seconds:.1f} s: {result.lots_per_second:,.0f} lots/s")


@dataclass(frozen=True, slots=True)
class Lane:
    """What a lane process needs: all of it pickles."""

    url: str
    settings: Any
    network: Network
    lane: int
    lanes: int
    total: int
    seed: int


def _demo(engine: Any, settings: Any, *, total: int, seed: int, echo: Echo, lane: int = 0,
          lanes: int = 1) -> Demo:  # fmt: skip
    from integrations.database import session_factory
    from integrations.secrets import file_secret
    from integrations.signing import load_signer
    from integrations.vault import AesGcmVault, decode_key

    vault = AesGcmVault.from_secret(
        decode_key(settings.seller_key.get_secret_value())
        if settings.seller_key
        else file_secret(settings.data_dir / "keys" / "seller.key")
    )
    return Demo(
        session_factory(engine),
        vault,
        load_signer(settings),
        tolerances=settings.discrepancy_tolerance,
        verification_url=settings.public_base_url.rstrip("/")
        + "/api/v1/public/certificates/{number}",
        total=total,
        seed=seed,
        echo=echo,
        lane=lane,
        lanes=lanes,
    )


@dataclass(frozen=True, slots=True)
class LaneResult:
    stats: dict[str, int]
    stages: dict[str, list[float]]
    to_certify: list[tuple[str, Held]]
    credit: dict[tuple[str, str, int], int]


async def _drive(lane: Lane, echo: Echo) -> LaneResult:
    from integrations.database import create_engine

    engine = create_engine(lane.url, pool_size=1)
    try:
        demo = _demo(
            engine, lane.settings, total=lane.total, seed=lane.seed, echo=echo, lane=lane.lane,
            lanes=lane.lanes,
        )  # fmt: skip
        demo.load(lane.network)
        await demo.drive()
        return LaneResult(dict(demo.stats), dict(demo.stages), demo.to_certify, dict(demo.credit))
    finally:
        await engine.dispose()


def stats_total(lanes: Sequence[LaneResult], prefix: str) -> int:
    return sum(v for done in lanes for k, v in done.stats.items() if k.startswith(prefix))


def _lane_process(lane: Lane) -> LaneResult:
    return asyncio.run(_drive(lane, functools.partial(print, flush=True)))


async def run_demo(
    url: str,
    settings: Any,
    *,
    lots_count: int,
    seed: int,
    workers: int = 1,
    echo: Echo = print,
) -> Result:
    """Build the network and drive `lots_count` lots through it on the database at `url`, in
    `workers` processes (lanes) that share the network out by collection point."""
    from integrations.database import create_engine

    started = time.perf_counter()
    engine = create_engine(url, pool_size=1)
    try:
        builder = _demo(engine, settings, total=lots_count, seed=seed, echo=echo, lanes=workers)
        network = await builder.build_network()
        builder.load(network)
        if workers == 1:
            await builder.drive()
            lanes = [LaneResult(dict(builder.stats), dict(builder.stages), [], {})]
        else:
            loop = asyncio.get_running_loop()
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                lanes = await asyncio.gather(
                    *(
                        loop.run_in_executor(
                            pool,
                            _lane_process,
                            Lane(url, settings, network, lane, workers, lots_count, seed),
                        )
                        for lane in range(workers)
                    )
                )
            for done in lanes:
                builder.credit.update(done.credit)
            chosen = [item for done in lanes for item in done.to_certify]
            await builder._stage("certify (after the lanes)", builder.certify_after(chosen))
            lanes.append(LaneResult(dict(builder.stats), dict(builder.stages), [], {}))
            issued = stats_total(lanes, "certificates.")
            echo(f"[{time.perf_counter() - started:7.1f} s] {issued:,} certificates issued")
        async with builder.factory() as session:
            counts = await summary(session)
    finally:
        await engine.dispose()
    stats: Counter[str] = Counter()
    stages: dict[str, tuple[float, float]] = {}
    for done in lanes:
        stats.update(done.stats)
        for name, (wall, cpu) in done.stages.items():
            before = stages.get(name, (0.0, 0.0))
            stages[name] = (before[0] + wall, before[1] + cpu)
    return Result(lots_count, time.perf_counter() - started, counts, stages, dict(stats))
